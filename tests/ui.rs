//! Compile-fail and compile-pass tests of the macros, through trybuild.
//!
//! Bless new or changed `.stderr` files with `TRYBUILD=overwrite cargo test --test ui`
//! and review every one: each should show one clear error at the user's token.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui-tests/fail/*.rs");
    t.pass("ui-tests/pass/*.rs");
}

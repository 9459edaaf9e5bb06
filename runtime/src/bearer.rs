//! Bearer tokens for the HTTP-served transports (`http`, `mcp`): the token
//! an `Authorization: Bearer <token>` header carries, and a comparison
//! that takes the same time wherever the tokens differ.

use subtle::ConstantTimeEq;

/// The token in an `Authorization` header's value (`Bearer <token>`, the
/// scheme in any case), or `None` when it names another scheme.
///
/// ```
/// use spoke::bearer::token_of;
/// assert_eq!(token_of("Bearer abc"), Some("abc"));
/// assert_eq!(token_of("bearer  abc "), Some("abc"));
/// assert_eq!(token_of("Basic YTpi"), None);
/// ```
pub fn token_of(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `given` is `expected`, compared in constant time.
///
/// ```
/// assert!(spoke::bearer::matches("s3cret", "s3cret"));
/// assert!(!spoke::bearer::matches("s3cre", "s3cret"));
/// ```
pub fn matches(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

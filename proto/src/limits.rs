//! The limits of a `Register` frame, part of the wire contract: the hub
//! refuses a Register over any of them (`INVALID_ARGUMENT`, naming the
//! field, the limit and the size), and a connector checks its own settings
//! against them before it dials.
//!
//! They are far above what a real connector sends (the largest manifest
//! among Spoke's examples is about 17 KB) and small enough that a peer
//! cannot make a hub keep, log or store megabytes with one frame.
//!
//! ```
//! assert_eq!(spoke_proto::limits::MAX_TAGS, 64);
//! ```

/// The longest `Register.instance.id`, in bytes.
pub const MAX_INSTANCE_ID_BYTES: usize = 256;
/// The longest `Register.instance.display_name`, in bytes.
pub const MAX_DISPLAY_NAME_BYTES: usize = 256;
/// The longest `Register.tenant`, in bytes.
pub const MAX_TENANT_BYTES: usize = 256;
/// The longest `Register.sdk_version`, in bytes.
pub const MAX_SDK_VERSION_BYTES: usize = 128;
/// The longest `Register.session_token`, in bytes (the hub issues 32).
pub const MAX_SESSION_TOKEN_BYTES: usize = 128;
/// The most entries of `Register.instance.tags`.
pub const MAX_TAGS: usize = 64;
/// The longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 128;
/// The most entries of `Register.instance.metadata`.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// The longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 128;
/// The longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;
/// The longest `Register.manifest_json`, in bytes: 1 MiB, some sixty times
/// the largest example's manifest.
pub const MAX_MANIFEST_JSON_BYTES: usize = 1024 * 1024;
/// The longest connector name (the manifest's `name`), in bytes.
pub const MAX_CONNECTOR_NAME_BYTES: usize = 64;
/// The longest connector version (the manifest's `version`), in bytes.
pub const MAX_CONNECTOR_VERSION_BYTES: usize = 128;
/// The longest `Register.credentials.public_key`: an Ed25519 key, 32 bytes.
pub const MAX_PUBLIC_KEY_BYTES: usize = 32;
/// The longest `Register.credentials.assertion` (an encoded `Assertion`
/// within the limits above is under 700 bytes).
pub const MAX_ASSERTION_BYTES: usize = 1024;
/// The longest `Register.credentials.signature`: an Ed25519 signature, 64 bytes.
pub const MAX_SIGNATURE_BYTES: usize = 64;
/// The longest `Register.credentials.registration_token`, in bytes (the
/// hub issues 68).
pub const MAX_REGISTRATION_TOKEN_BYTES: usize = 128;
/// The largest whole `Register`, encoded: 1 MiB. Each field within its own
/// limit, they could add up to some 85 KiB more (a manifest of nearly
/// 1 MiB leaves little room for the rest).
pub const MAX_REGISTER_BYTES: usize = 1024 * 1024;

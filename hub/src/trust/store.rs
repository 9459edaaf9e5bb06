//! The hub's durable store (`<data>/hub.db`, SQLite through rusqlite):
//! tenants, connector instances with their public keys and approval state,
//! one-time registration tokens and client tokens.
//!
//! Only the SHA-256 of a token is stored. The database runs in WAL mode
//! with foreign keys on and a busy timeout; its schema version is SQLite's
//! `user_version`, and [`MIGRATIONS`] bring an older file up to date at
//! open. Every write is one transaction, so a crash leaves either all of a
//! change or none of it.
//!
//! The calls block: the hub makes them from `spawn_blocking` (attach,
//! admin calls), never once per client call (client tokens are cached in
//! memory, see `access`).
//!
//! Pending instances are bounded: [`Store::observe`] records a new one only
//! under the caps it is given, [`Store::expire_pending`] forgets old ones,
//! and [`Store::pending_page`] lists them a page at a time.

use std::path::Path;
use std::sync::MutexGuard;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use crate::database::{Database, clamp};
use crate::ids::{hex, random_bytes, unix_ms};

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "hub.db";
/// How long a write waits for another writer of the same file.
/// The prefix of client tokens.
pub const CLIENT_TOKEN_PREFIX: &str = "spk_";
/// The prefix of registration tokens.
pub const REGISTRATION_TOKEN_PREFIX: &str = "spr_";

/// The schema, one entry per version: `MIGRATIONS[n]` takes version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    created_unix_ms INTEGER NOT NULL
);
CREATE TABLE instances (
    tenant TEXT NOT NULL REFERENCES tenants(name),
    connector TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    public_key BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'revoked')),
    display_name TEXT NOT NULL DEFAULT '',
    peer TEXT NOT NULL DEFAULT '',
    first_seen_unix_ms INTEGER NOT NULL,
    decided_unix_ms INTEGER,
    decided_by TEXT,
    PRIMARY KEY (tenant, connector, instance_id)
);
CREATE TABLE registration_tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    connector TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    expires_unix_ms INTEGER NOT NULL,
    used_unix_ms INTEGER,
    used_by TEXT
);
CREATE TABLE client_tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    connectors TEXT NOT NULL,
    can_write INTEGER NOT NULL,
    admin INTEGER NOT NULL,
    operator INTEGER NOT NULL,
    label TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    expires_unix_ms INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
);
",
    r"
CREATE INDEX instances_by_status ON instances (status, first_seen_unix_ms);
",
];

pub use crate::database::StoreError;

/// Where an instance stands with the hub's administrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Seen, not yet decided.
    Pending,
    /// Calls may be routed to it.
    Approved,
    /// Refused before it was approved.
    Rejected,
    /// Approved once, then revoked.
    Revoked,
}

impl Approval {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Approval::Pending => "pending",
            Approval::Approved => "approved",
            Approval::Rejected => "rejected",
            Approval::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Approval {
        match text {
            "approved" => Approval::Approved,
            "rejected" => Approval::Rejected,
            "revoked" => Approval::Revoked,
            _ => Approval::Pending,
        }
    }
}

/// One instance the hub has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Its tenant (never empty).
    pub tenant: String,
    /// Its connector.
    pub connector: String,
    /// Its id.
    pub instance_id: String,
    /// Its Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Pending, approved, rejected or revoked.
    pub status: Approval,
    /// Its display name when last seen.
    pub display_name: String,
    /// The address it last attached from.
    pub peer: String,
    /// When it was first seen.
    pub first_seen_unix_ms: u64,
    /// When it was last decided on.
    pub decided_unix_ms: Option<u64>,
    /// Who decided (a token id or `registration-token <id>`).
    pub decided_by: Option<String>,
}

/// A new instance to record.
#[derive(Debug, Clone)]
pub struct Sighting<'a> {
    /// Its tenant (never empty).
    pub tenant: &'a str,
    /// Its connector.
    pub connector: &'a str,
    /// Its id.
    pub instance_id: &'a str,
    /// Its public key.
    pub public_key: &'a [u8],
    /// Its display name.
    pub display_name: &'a str,
    /// Where it attached from.
    pub peer: &'a str,
}

/// The most instances that may be pending approval: a new one beyond
/// either cap is not recorded (see [`Store::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCaps {
    /// In one tenant.
    pub per_tenant: usize,
    /// In all tenants together.
    pub overall: usize,
}

/// What [`Store::observe`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The instance is recorded (new, or already pending: its display name
    /// and peer updated), or known otherwise (its record unchanged).
    Recorded(InstanceRecord),
    /// A new instance was not recorded: its tenant has `per_tenant` pending
    /// instances already.
    TenantFull {
        /// The cap it reached.
        per_tenant: usize,
    },
    /// A new instance was not recorded: the hub has `overall` pending
    /// instances already.
    HubFull {
        /// The cap it reached.
        overall: usize,
    },
}

/// Where a page of pending instances starts: after the instance first seen
/// at `first_seen_unix_ms` with this row id (the listing order). As a page
/// token it reads `<first_seen_unix_ms>.<row id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCursor {
    first_seen_unix_ms: i64,
    row: i64,
}

impl std::fmt::Display for PendingCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.first_seen_unix_ms, self.row)
    }
}

impl std::str::FromStr for PendingCursor {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (first_seen, row) = text.split_once('.').ok_or(())?;
        let number = |t: &str| {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<i64>().ok())
                .flatten()
                .ok_or(())
        };
        Ok(PendingCursor {
            first_seen_unix_ms: number(first_seen)?,
            row: number(row)?,
        })
    }
}

/// Which connectors a client token may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every connector of its tenant.
    All,
    /// These connectors.
    Only(Vec<String>),
}

impl Scope {
    /// Whether the scope includes `connector`.
    pub fn allows(&self, connector: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(names) => names.iter().any(|n| n == connector),
        }
    }

    /// The connector names, or `["*"]` for all.
    pub fn names(&self) -> Vec<String> {
        match self {
            Scope::All => vec!["*".to_owned()],
            Scope::Only(names) => names.clone(),
        }
    }

    fn to_text(&self) -> String {
        match self {
            Scope::All => "*".to_owned(),
            Scope::Only(names) => serde_json::to_string(names).unwrap_or_else(|_| "[]".into()),
        }
    }

    fn parse(text: &str) -> Scope {
        if text == "*" {
            Scope::All
        } else {
            Scope::Only(serde_json::from_str(text).unwrap_or_default())
        }
    }
}

/// What a client token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    /// Its id (not secret).
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// The connectors it may use.
    pub connectors: Scope,
    /// May call write actions.
    pub write: bool,
    /// May call admin-only and hidden actions and the Admin service.
    pub admin: bool,
    /// Acts on every tenant.
    pub operator: bool,
    /// A name for people.
    pub label: String,
    /// When it stops working; `None` never.
    pub expires_unix_ms: Option<u64>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A client token as listed: what it grants, and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTokenRecord {
    /// What it grants (and whether it is revoked).
    pub grant: ClientGrant,
    /// When it was made.
    pub created_unix_ms: u64,
}

/// A token just made: the secret (shown once) and what it is. Its `Debug`
/// leaves the secret out.
#[derive(Clone)]
pub struct NewToken {
    /// The token itself.
    pub token: String,
    /// Its id.
    pub id: String,
    /// When it expires; `None` never.
    pub expires_unix_ms: Option<u64>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"<redacted>")
            .field("id", &self.id)
            .field("expires_unix_ms", &self.expires_unix_ms)
            .finish()
    }
}

/// Why a registration token did not approve an instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// No such token.
    #[error("the registration token is not known to this hub")]
    Unknown,
    /// Used before.
    #[error("the registration token was already used")]
    Used,
    /// Past its expiry.
    #[error("the registration token expired")]
    Expired,
    /// Made for another connector or tenant.
    #[error("the registration token is for another connector or tenant")]
    Mismatch,
    /// The instance was rejected or revoked; a token does not undo that.
    #[error("the instance was {0} by an administrator")]
    Refused(&'static str),
    /// The instance is recorded with another key.
    #[error("the instance is recorded with another public key")]
    OtherKey,
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

/// The SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Makes a fresh token: `prefix` and 64 hex digits of OS randomness.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex(&random_bytes::<32>()))
}

/// The hub's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (creating if needed) `<dir>/hub.db`, making `dir` with mode
    /// 0700 if it does not exist, and migrates it to the current schema.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            db: Database::open(dir, DB_FILE, MIGRATIONS)?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.db.conn()
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        self.db.err(source)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.db.write(f)
    }

    /// One recorded instance.
    pub fn instance(
        &self,
        tenant: &str,
        connector: &str,
        instance_id: &str,
    ) -> Result<Option<InstanceRecord>, StoreError> {
        get_instance(&self.conn(), tenant, connector, instance_id).map_err(|e| self.err(e))
    }

    /// Records an instance as pending unless it is known; returns its
    /// record. A pending instance's display name and peer are updated. A
    /// new instance is recorded only while its tenant has fewer than
    /// `caps.per_tenant` pending instances and the hub fewer than
    /// `caps.overall`; otherwise nothing is written (not even its tenant).
    pub fn observe(&self, seen: &Sighting<'_>, caps: PendingCaps) -> Result<Observed, StoreError> {
        self.write(|tx| {
            if get_instance(tx, seen.tenant, seen.connector, seen.instance_id)?.is_none() {
                let in_tenant: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM instances WHERE status = 'pending' AND tenant = ?1",
                    params![seen.tenant],
                    |r| r.get(0),
                )?;
                if usize::try_from(in_tenant).unwrap_or(usize::MAX) >= caps.per_tenant {
                    return Ok(Observed::TenantFull {
                        per_tenant: caps.per_tenant,
                    });
                }
                let overall: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM instances WHERE status = 'pending'",
                    [],
                    |r| r.get(0),
                )?;
                if usize::try_from(overall).unwrap_or(usize::MAX) >= caps.overall {
                    return Ok(Observed::HubFull {
                        overall: caps.overall,
                    });
                }
            }
            ensure_tenant(tx, seen.tenant)?;
            tx.execute(
                "INSERT INTO instances (tenant, connector, instance_id, public_key, status, display_name, peer, first_seen_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)
                 ON CONFLICT (tenant, connector, instance_id) DO UPDATE
                 SET display_name = excluded.display_name, peer = excluded.peer
                 WHERE status = 'pending' AND public_key = excluded.public_key",
                params![seen.tenant, seen.connector, seen.instance_id, seen.public_key, seen.display_name, seen.peer, unix_ms() as i64],
            )?;
            get_instance(tx, seen.tenant, seen.connector, seen.instance_id)?
                .map(Observed::Recorded)
                .ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
    }

    /// Deletes the records of the instances still pending that were first
    /// seen before `first_seen_before_unix_ms`, except those `keep` names
    /// (by tenant, connector and id: the attached ones), and the tenants
    /// that only they used; returns the deleted instances.
    pub fn expire_pending(
        &self,
        first_seen_before_unix_ms: u64,
        keep: &dyn Fn(&str, &str, &str) -> bool,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare(
                "SELECT tenant, connector, instance_id, public_key, status, display_name, peer, first_seen_unix_ms, decided_unix_ms, decided_by
                 FROM instances WHERE status = 'pending' AND first_seen_unix_ms < ?1",
            )?;
            let old = stmt
                .query_map(params![clamp(first_seen_before_unix_ms)], instance_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut expired = Vec::new();
            for record in old {
                if keep(&record.tenant, &record.connector, &record.instance_id) {
                    continue;
                }
                tx.execute(
                    "DELETE FROM instances WHERE tenant = ?1 AND connector = ?2 AND instance_id = ?3 AND status = 'pending'",
                    params![record.tenant, record.connector, record.instance_id],
                )?;
                expired.push(record);
            }
            let mut tenants: Vec<&str> = expired.iter().map(|r| r.tenant.as_str()).collect();
            tenants.sort_unstable();
            tenants.dedup();
            for tenant in tenants {
                tx.execute(
                    "DELETE FROM tenants WHERE name = ?1
                     AND NOT EXISTS (SELECT 1 FROM instances WHERE tenant = ?1)
                     AND NOT EXISTS (SELECT 1 FROM registration_tokens WHERE tenant = ?1)
                     AND NOT EXISTS (SELECT 1 FROM client_tokens WHERE tenant = ?1)",
                    params![tenant],
                )?;
            }
            Ok(expired)
        })
    }

    /// Records an instance as approved by `by` (whatever it was before,
    /// with this key); for instances the hub trusts itself (its sidecars).
    pub fn approve_trusted(
        &self,
        seen: &Sighting<'_>,
        by: &str,
    ) -> Result<InstanceRecord, StoreError> {
        self.write(|tx| {
            ensure_tenant(tx, seen.tenant)?;
            let now = unix_ms() as i64;
            tx.execute(
                "INSERT INTO instances (tenant, connector, instance_id, public_key, status, display_name, peer, first_seen_unix_ms, decided_unix_ms, decided_by)
                 VALUES (?1, ?2, ?3, ?4, 'approved', ?5, ?6, ?7, ?7, ?8)
                 ON CONFLICT (tenant, connector, instance_id) DO UPDATE
                 SET public_key = excluded.public_key, status = 'approved', peer = excluded.peer,
                     display_name = excluded.display_name, decided_unix_ms = excluded.decided_unix_ms,
                     decided_by = excluded.decided_by",
                params![seen.tenant, seen.connector, seen.instance_id, seen.public_key, seen.display_name, seen.peer, now, by],
            )?;
            get_instance(tx, seen.tenant, seen.connector, seen.instance_id)?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
    }

    /// Approves the instance with a one-time registration token, in one
    /// transaction: the token is consumed only if the instance ends up
    /// approved, and of two instances racing for one token exactly one wins.
    pub fn redeem(&self, token: &str, seen: &Sighting<'_>) -> Result<InstanceRecord, RedeemError> {
        let hash = token_hash(token);
        let store = |e: rusqlite::Error| RedeemError::Store(self.err(e).to_string());
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store)?;
        let row: Option<(String, String, String, i64, Option<i64>)> = tx
            .query_row(
                "SELECT id, tenant, connector, expires_unix_ms, used_unix_ms FROM registration_tokens WHERE hash = ?1",
                params![&hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(store)?;
        let Some((id, tenant, connector, expires, used)) = row else {
            return Err(RedeemError::Unknown);
        };
        if used.is_some() {
            return Err(RedeemError::Used);
        }
        let now = unix_ms() as i64;
        if expires < now {
            return Err(RedeemError::Expired);
        }
        if tenant != seen.tenant || connector != seen.connector {
            return Err(RedeemError::Mismatch);
        }
        if let Some(existing) =
            get_instance(&tx, seen.tenant, seen.connector, seen.instance_id).map_err(store)?
        {
            if existing.public_key != seen.public_key {
                return Err(RedeemError::OtherKey);
            }
            if matches!(existing.status, Approval::Rejected | Approval::Revoked) {
                return Err(RedeemError::Refused(existing.status.as_str()));
            }
        }
        let used_by = format!("{}/{}/{}", seen.tenant, seen.connector, seen.instance_id);
        let changed = tx
            .execute(
                "UPDATE registration_tokens SET used_unix_ms = ?1, used_by = ?2 WHERE id = ?3 AND used_unix_ms IS NULL",
                params![now, used_by, id],
            )
            .map_err(store)?;
        if changed != 1 {
            return Err(RedeemError::Used);
        }
        tx.execute(
            "INSERT INTO instances (tenant, connector, instance_id, public_key, status, display_name, peer, first_seen_unix_ms, decided_unix_ms, decided_by)
             VALUES (?1, ?2, ?3, ?4, 'approved', ?5, ?6, ?7, ?7, ?8)
             ON CONFLICT (tenant, connector, instance_id) DO UPDATE
             SET status = 'approved', peer = excluded.peer, decided_unix_ms = excluded.decided_unix_ms,
                 decided_by = excluded.decided_by",
            params![seen.tenant, seen.connector, seen.instance_id, seen.public_key, seen.display_name, seen.peer, now, format!("registration-token {id}")],
        )
        .map_err(store)?;
        let record = get_instance(&tx, seen.tenant, seen.connector, seen.instance_id)
            .map_err(store)?
            .ok_or(RedeemError::Unknown)?;
        tx.commit().map_err(store)?;
        Ok(record)
    }

    /// Deletes an instance's record (key and decision); whether there was one.
    pub fn forget(
        &self,
        tenant: &str,
        connector: &str,
        instance_id: &str,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let deleted = tx.execute(
                "DELETE FROM instances WHERE tenant = ?1 AND connector = ?2 AND instance_id = ?3",
                params![tenant, connector, instance_id],
            )?;
            Ok(deleted > 0)
        })
    }

    /// Sets an instance's approval; `None` if it is not recorded.
    pub fn decide(
        &self,
        tenant: &str,
        connector: &str,
        instance_id: &str,
        status: Approval,
        by: &str,
    ) -> Result<Option<InstanceRecord>, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE instances SET status = ?4, decided_unix_ms = ?5, decided_by = ?6
                 WHERE tenant = ?1 AND connector = ?2 AND instance_id = ?3",
                params![
                    tenant,
                    connector,
                    instance_id,
                    status.as_str(),
                    unix_ms() as i64,
                    by
                ],
            )?;
            get_instance(tx, tenant, connector, instance_id)
        })
    }

    /// The recorded instances with this id, optionally narrowed to a
    /// connector and a tenant.
    pub fn find(
        &self,
        instance_id: &str,
        connector: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT tenant, connector, instance_id, public_key, status, display_name, peer, first_seen_unix_ms, decided_unix_ms, decided_by
                 FROM instances WHERE instance_id = ?1 AND (?2 IS NULL OR connector = ?2) AND (?3 IS NULL OR tenant = ?3)
                 ORDER BY tenant, connector",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![instance_id, connector, tenant], instance_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Up to `limit` pending instances, of one tenant or (`None`) of all,
    /// oldest first (by when each was first seen, then by when it was
    /// recorded), starting after `after` (`None`: from the first); each
    /// with the cursor that starts after it.
    pub fn pending_page(
        &self,
        tenant: Option<&str>,
        after: Option<PendingCursor>,
        limit: usize,
    ) -> Result<Vec<(PendingCursor, InstanceRecord)>, StoreError> {
        let after = after.unwrap_or(PendingCursor {
            first_seen_unix_ms: i64::MIN,
            row: i64::MIN,
        });
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT tenant, connector, instance_id, public_key, status, display_name, peer, first_seen_unix_ms, decided_unix_ms, decided_by, rowid
                 FROM instances WHERE status = 'pending' AND (?1 IS NULL OR tenant = ?1)
                 AND (first_seen_unix_ms, rowid) > (?2, ?3)
                 ORDER BY first_seen_unix_ms, rowid LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    tenant,
                    after.first_seen_unix_ms,
                    after.row,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    let cursor = PendingCursor {
                        first_seen_unix_ms: r.get(7)?,
                        row: r.get(10)?,
                    };
                    Ok((cursor, instance_row(r)?))
                },
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Makes a one-time registration token for `connector` of `tenant`,
    /// valid for `ttl`.
    pub fn create_registration_token(
        &self,
        tenant: &str,
        connector: &str,
        ttl: Duration,
    ) -> Result<NewToken, StoreError> {
        let token = new_secret(REGISTRATION_TOKEN_PREFIX);
        let id = format!("r-{}", hex(&random_bytes::<6>()));
        let now = unix_ms();
        let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self.write(|tx| {
            ensure_tenant(tx, tenant)?;
            tx.execute(
                "INSERT INTO registration_tokens (id, hash, tenant, connector, created_unix_ms, expires_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, &token_hash(&token)[..], tenant, connector, now as i64, clamp(expires)],
            )?;
            Ok(())
        })
        ?;
        Ok(NewToken {
            token,
            id,
            expires_unix_ms: Some(expires),
        })
    }

    /// Makes a client token granting `grant` (its id and revoked flag are
    /// ignored); returns the token and, with the id filled in, the grant.
    pub fn create_client_token(
        &self,
        grant: &ClientGrant,
    ) -> Result<(NewToken, ClientGrant), StoreError> {
        let token = new_secret(CLIENT_TOKEN_PREFIX);
        let id = format!("c-{}", hex(&random_bytes::<6>()));
        self.write(|tx| {
            ensure_tenant(tx, &grant.tenant)?;
            tx.execute(
                "INSERT INTO client_tokens (id, hash, tenant, connectors, can_write, admin, operator, label, created_unix_ms, expires_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id,
                    &token_hash(&token)[..],
                    grant.tenant,
                    grant.connectors.to_text(),
                    grant.write,
                    grant.admin,
                    grant.operator,
                    grant.label,
                    unix_ms() as i64,
                    grant.expires_unix_ms.map(clamp),
                ],
            )?;
            Ok(())
        })
        ?;
        let grant = ClientGrant {
            id: id.clone(),
            revoked: false,
            ..grant.clone()
        };
        Ok((
            NewToken {
                token,
                id,
                expires_unix_ms: grant.expires_unix_ms,
            },
            grant,
        ))
    }

    /// Every client token that is not revoked, by hash.
    pub fn client_tokens(&self) -> Result<Vec<([u8; 32], ClientGrant)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {CLIENT_TOKEN_COLUMNS} FROM client_tokens WHERE revoked = 0"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let (hash, record) = client_token_row(r)?;
                Ok((hash, record.grant))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The client tokens of one tenant or (`None`) of all, revoked ones
    /// included, oldest first.
    pub fn list_client_tokens(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<ClientTokenRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {CLIENT_TOKEN_COLUMNS} FROM client_tokens WHERE (?1 IS NULL OR tenant = ?1)
                 ORDER BY created_unix_ms, id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![tenant], |r| Ok(client_token_row(r)?.1))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Revokes the client token `id` if it belongs to `tenant` (`None`: to
    /// any tenant); returns what it granted, or `None` when there is no
    /// such token there. Revoking a revoked token changes nothing.
    pub fn revoke_client_token(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<ClientGrant>, StoreError> {
        self.write(|tx| {
            let found = tx
                .query_row(
                    &format!(
                        "SELECT {CLIENT_TOKEN_COLUMNS} FROM client_tokens
                         WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
                    ),
                    params![id, tenant],
                    |r| Ok(client_token_row(r)?.1),
                )
                .optional()?;
            let Some(record) = found else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE client_tokens SET revoked = 1 WHERE id = ?1",
                params![id],
            )?;
            Ok(Some(ClientGrant {
                revoked: true,
                ..record.grant
            }))
        })
    }

    /// Whether an operator token that is not revoked exists.
    pub fn has_operator_token(&self) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM client_tokens WHERE operator = 1 AND revoked = 0)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

/// The columns `client_token_row` reads, in its order.
const CLIENT_TOKEN_COLUMNS: &str = "hash, id, tenant, connectors, can_write, admin, operator, label, expires_unix_ms, revoked, created_unix_ms";

/// One `client_tokens` row selected with `CLIENT_TOKEN_COLUMNS`: its hash
/// and what it is.
fn client_token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<([u8; 32], ClientTokenRecord)> {
    let hash: Vec<u8> = r.get(0)?;
    let mut key = [0u8; 32];
    if hash.len() == 32 {
        key.copy_from_slice(&hash);
    }
    let connectors: String = r.get(3)?;
    let expires: Option<i64> = r.get(8)?;
    let created: i64 = r.get(10)?;
    Ok((
        key,
        ClientTokenRecord {
            grant: ClientGrant {
                id: r.get(1)?,
                tenant: r.get(2)?,
                connectors: Scope::parse(&connectors),
                write: r.get(4)?,
                admin: r.get(5)?,
                operator: r.get(6)?,
                label: r.get(7)?,
                expires_unix_ms: expires.map(|e| e.max(0) as u64),
                revoked: r.get(9)?,
            },
            created_unix_ms: created.max(0) as u64,
        },
    ))
}

fn ensure_tenant(conn: &Connection, tenant: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO tenants (name, created_unix_ms) VALUES (?1, ?2)",
        params![tenant, unix_ms() as i64],
    )
    .map(|_| ())
}

fn get_instance(
    conn: &Connection,
    tenant: &str,
    connector: &str,
    instance_id: &str,
) -> rusqlite::Result<Option<InstanceRecord>> {
    conn.query_row(
        "SELECT tenant, connector, instance_id, public_key, status, display_name, peer, first_seen_unix_ms, decided_unix_ms, decided_by
         FROM instances WHERE tenant = ?1 AND connector = ?2 AND instance_id = ?3",
        params![tenant, connector, instance_id],
        instance_row,
    )
    .optional()
}

fn instance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let status: String = r.get(4)?;
    let first: i64 = r.get(7)?;
    let decided: Option<i64> = r.get(8)?;
    Ok(InstanceRecord {
        tenant: r.get(0)?,
        connector: r.get(1)?,
        instance_id: r.get(2)?,
        public_key: r.get(3)?,
        status: Approval::parse(&status),
        display_name: r.get(5)?,
        peer: r.get(6)?,
        first_seen_unix_ms: first.max(0) as u64,
        decided_unix_ms: decided.map(|d| d.max(0) as u64),
        decided_by: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No cap in the way.
    const UNCAPPED: PendingCaps = PendingCaps {
        per_tenant: usize::MAX,
        overall: usize::MAX,
    };

    /// Every pending instance, of `tenant` or of all.
    fn pending(store: &Store, tenant: Option<&str>) -> Vec<InstanceRecord> {
        store
            .pending_page(tenant, None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Observes `seen` with no cap; its record.
    fn observe(store: &Store, seen: &Sighting<'_>) -> InstanceRecord {
        match store.observe(seen, UNCAPPED).unwrap() {
            Observed::Recorded(record) => record,
            other => panic!("not recorded: {other:?}"),
        }
    }

    fn seen<'a>(id: &'a str, key: &'a [u8]) -> Sighting<'a> {
        Sighting {
            tenant: "default",
            connector: "echo",
            instance_id: id,
            public_key: key,
            display_name: "Echo",
            peer: "127.0.0.1:1",
        }
    }

    #[test]
    fn reopens_with_its_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            observe(&store, &seen("a", &[1; 32]));
            store
                .decide("default", "echo", "a", Approval::Approved, "test")
                .unwrap();
            let grant = ClientGrant {
                id: String::new(),
                tenant: "acme".into(),
                connectors: Scope::Only(vec!["echo".into()]),
                write: true,
                admin: false,
                operator: false,
                label: "ci".into(),
                expires_unix_ms: None,
                revoked: false,
            };
            store.create_client_token(&grant).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let a = store.instance("default", "echo", "a").unwrap().unwrap();
        assert_eq!(a.status, Approval::Approved);
        assert_eq!(a.public_key, vec![1; 32]);
        let tokens = store.client_tokens().unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].1.connectors, Scope::Only(vec!["echo".into()]));
        let version: u32 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as u32);
    }

    #[test]
    fn an_interrupted_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A transaction that inserts, then fails midway, is rolled back.
        let result: Result<(), StoreError> = store.write(|tx| {
            ensure_tenant(tx, "half")?;
            tx.execute(
                "INSERT INTO instances (tenant, connector, instance_id, public_key, status, first_seen_unix_ms)
                 VALUES ('half', 'echo', 'x', x'00', 'pending', 0)",
                [],
            )?;
            Err(rusqlite::Error::InvalidQuery)
        });
        assert!(result.is_err());
        // A transaction dropped without commit (a crash) is rolled back too.
        {
            let mut conn = store.conn();
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO tenants (name, created_unix_ms) VALUES ('dropped', 0)",
                [],
            )
            .unwrap();
            drop(tx);
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.instance("half", "echo", "x").unwrap().is_none());
        let tenants: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM tenants WHERE name IN ('half', 'dropped')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tenants, 0);
    }

    #[test]
    fn a_registration_token_approves_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let token = store
            .create_registration_token("default", "echo", Duration::from_secs(60))
            .unwrap();
        assert!(token.token.starts_with(REGISTRATION_TOKEN_PREFIX));
        let a = store.redeem(&token.token, &seen("a", &[1; 32])).unwrap();
        assert_eq!(a.status, Approval::Approved);
        assert_eq!(
            store
                .redeem(&token.token, &seen("b", &[2; 32]))
                .unwrap_err(),
            RedeemError::Used
        );
        assert!(store.instance("default", "echo", "b").unwrap().is_none());
        assert_eq!(
            store.redeem("spr_nope", &seen("b", &[2; 32])).unwrap_err(),
            RedeemError::Unknown
        );
        let other = store
            .create_registration_token("default", "other", Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            store
                .redeem(&other.token, &seen("b", &[2; 32]))
                .unwrap_err(),
            RedeemError::Mismatch
        );
        // Not consumed by the mismatch.
        let mut s = seen("b", &[2; 32]);
        s.connector = "other";
        assert!(store.redeem(&other.token, &s).is_ok());
    }

    #[test]
    fn racing_instances_get_one_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let token = store
            .create_registration_token("default", "echo", Duration::from_secs(60))
            .unwrap()
            .token;
        let handles: Vec<_> = (0..8u8)
            .map(|n| {
                let store = std::sync::Arc::clone(&store);
                let token = token.clone();
                std::thread::spawn(move || {
                    let id = format!("i{n}");
                    let key = [n; 32];
                    store.redeem(&token, &seen(&id, &key)).is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
    }

    #[test]
    fn pending_find_and_decide() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        observe(&store, &seen("a", &[1; 32]));
        let mut other = seen("a", &[2; 32]);
        other.connector = "files";
        observe(&store, &other);
        assert_eq!(pending(&store, None).len(), 2);
        assert_eq!(pending(&store, Some("acme")).len(), 0);
        assert_eq!(store.find("a", None, None).unwrap().len(), 2);
        assert_eq!(store.find("a", Some("files"), None).unwrap().len(), 1);
        let r = store
            .decide("default", "files", "a", Approval::Rejected, "t")
            .unwrap()
            .unwrap();
        assert_eq!(r.status, Approval::Rejected);
        assert_eq!(pending(&store, None).len(), 1);
        // A pending record keeps its first key.
        let again = observe(&store, &seen("a", &[9; 32]));
        assert_eq!(again.public_key, vec![1; 32]);
    }

    #[test]
    fn pending_caps_refuse_new_instances_but_not_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let caps = PendingCaps {
            per_tenant: 2,
            overall: 3,
        };
        let in_tenant = |tenant: &'static str, id: &'static str| Sighting {
            tenant,
            ..seen(id, &[7; 32])
        };
        for id in ["a", "b"] {
            assert!(matches!(
                store.observe(&in_tenant("acme", id), caps).unwrap(),
                Observed::Recorded(_)
            ));
        }
        assert_eq!(
            store.observe(&in_tenant("acme", "c"), caps).unwrap(),
            Observed::TenantFull { per_tenant: 2 }
        );
        // An instance already pending is not new: it attaches again.
        let mut again = in_tenant("acme", "a");
        again.peer = "10.0.0.9:1";
        let Observed::Recorded(record) = store.observe(&again, caps).unwrap() else {
            panic!("a pending instance is refused");
        };
        assert_eq!(record.peer, "10.0.0.9:1");
        // Another tenant has room, until the hub as a whole is full.
        assert!(matches!(
            store.observe(&in_tenant("beta", "a"), caps).unwrap(),
            Observed::Recorded(_)
        ));
        assert_eq!(
            store.observe(&in_tenant("gamma", "a"), caps).unwrap(),
            Observed::HubFull { overall: 3 }
        );
        // A refused instance leaves nothing behind, not even its tenant.
        assert!(store.instance("gamma", "echo", "a").unwrap().is_none());
        let tenants: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM tenants WHERE name = 'gamma'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tenants, 0);
        // A decided instance frees its place.
        store
            .decide("acme", "echo", "b", Approval::Approved, "t")
            .unwrap();
        assert!(matches!(
            store.observe(&in_tenant("acme", "c"), caps).unwrap(),
            Observed::Recorded(_)
        ));
        assert_eq!(
            store.observe(&in_tenant("acme", "d"), caps).unwrap(),
            Observed::TenantFull { per_tenant: 2 }
        );
    }

    #[test]
    fn expiry_forgets_old_pending_instances_except_the_kept_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let in_tenant = |tenant: &'static str, id: &'static str| Sighting {
            tenant,
            ..seen(id, &[7; 32])
        };
        observe(&store, &in_tenant("lone", "old"));
        observe(&store, &in_tenant("acme", "live"));
        observe(&store, &in_tenant("acme", "gone"));
        observe(&store, &in_tenant("acme", "approved"));
        store
            .decide("acme", "echo", "approved", Approval::Approved, "t")
            .unwrap();
        let first_seen = store
            .instance("acme", "echo", "gone")
            .unwrap()
            .map_or_else(unix_ms, |r| r.first_seen_unix_ms);
        // Nothing was first seen before a time in the past.
        assert!(
            store
                .expire_pending(first_seen - 1, &|_, _, _| false)
                .unwrap()
                .is_empty()
        );
        let expired = store
            .expire_pending(unix_ms() + 1, &|_, _, id| id == "live")
            .unwrap();
        let mut ids: Vec<&str> = expired.iter().map(|r| r.instance_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["gone", "old"]);
        let left: Vec<String> = pending(&store, None)
            .into_iter()
            .map(|r| r.instance_id)
            .collect();
        assert_eq!(left, ["live"]);
        assert!(
            store
                .instance("acme", "echo", "approved")
                .unwrap()
                .is_some()
        );
        // The tenant only the expired instance used is gone; acme stays.
        let tenants: Vec<String> = store
            .conn()
            .prepare("SELECT name FROM tenants ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tenants, ["acme"]);
    }

    #[test]
    fn pending_pages_list_every_instance_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..7).map(|n| format!("i{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            let tenant = if n % 2 == 0 { "acme" } else { "beta" };
            observe(
                &store,
                &Sighting {
                    tenant,
                    ..seen(id, &[7; 32])
                },
            );
        }
        let all: Vec<String> = pending(&store, None)
            .into_iter()
            .map(|r| r.instance_id)
            .collect();
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store.pending_page(None, after, 3).unwrap();
            assert!(page.len() <= 3);
            let Some((cursor, _)) = page.last() else {
                break;
            };
            // The cursor travels as text (a page token) and back.
            let token = cursor.to_string();
            after = Some(token.parse::<PendingCursor>().unwrap());
            paged.extend(page.into_iter().map(|(_, r)| r.instance_id));
        }
        assert_eq!(paged, all);
        assert_eq!(paged.len(), 7);
        let acme: Vec<String> = store
            .pending_page(Some("acme"), None, 100)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.instance_id)
            .collect();
        assert_eq!(acme, ["i0", "i2", "i4", "i6"]);
        for junk in [
            "",
            "12",
            "a.b",
            "1.",
            ".1",
            "-1.2",
            "1.2.3",
            "99999999999999999999.1",
        ] {
            assert!(junk.parse::<PendingCursor>().is_err(), "{junk:?}");
        }
    }
}

//! The approval flow on Attach (see "Trust." in `spoke.proto`): the
//! instance proves its key (`assertion::verify`), then the store decides:
//!
//! - an instance the hub trusts itself (a supervised sidecar's bridge key)
//!   is recorded approved;
//! - a known instance must use the key it was recorded with; approved goes
//!   ahead, rejected or revoked is `PERMISSION_DENIED`;
//! - an unknown (or still pending) instance with a valid registration token
//!   is approved at once and the token is consumed;
//! - otherwise it is recorded pending: it attaches, nothing is routed to it
//!   until an administrator approves it (`Admin.Approve`), unless its
//!   tenant or the hub already has as many pending instances as the caps
//!   allow (`RegistrationLimits`): then it is `RESOURCE_EXHAUSTED` and
//!   nothing is written. An instance already pending is not new.
//!
//! Wrong or missing proofs and bad registration tokens are
//! `UNAUTHENTICATED`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use spoke_runtime::duration;
use spoke_runtime::grpc::identity::fingerprint;
use tonic::Status;

use crate::config::RegistrationLimits;
use crate::ids::unix_ms;
use crate::routing::registry::{InstanceKey, Registration};
use crate::trust::assertion::{self, Claim, ReplayCache};
use crate::trust::store::{
    Approval, Observed, PendingCaps, RedeemError, Sighting, Store, StoreError,
};

/// What a hub with auth keeps for checking instances.
#[derive(Debug)]
pub(crate) struct Trust {
    /// The durable store.
    pub(crate) store: Arc<Store>,
    /// Nonces of recent assertions.
    replays: ReplayCache,
    /// Public keys the hub trusts without approval (its sidecar bridges).
    trusted_keys: Mutex<HashSet<[u8; 32]>>,
}

impl Trust {
    /// Checks instances against `store`.
    pub(crate) fn new(store: Arc<Store>) -> Trust {
        Trust {
            store,
            replays: ReplayCache::default(),
            trusted_keys: Mutex::default(),
        }
    }

    /// Trusts instances signing with `public_key` (a sidecar bridge's key).
    pub(crate) fn trust_key(&self, public_key: [u8; 32]) {
        self.trusted_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(public_key);
    }

    fn is_trusted(&self, public_key: &[u8; 32]) -> bool {
        self.trusted_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(public_key)
    }

    /// Decides on an attaching instance: `Ok(true)` approved, `Ok(false)`
    /// pending, `Err` the status that ends the stream. A new pending
    /// instance must fit under the caps of `limits`.
    pub(crate) async fn check_attach(
        self: &Arc<Self>,
        reg: &Registration,
        peer: &str,
        limits: &RegistrationLimits,
    ) -> Result<bool, Status> {
        let claim = Claim {
            tenant: &reg.scope,
            connector: &reg.manifest.name,
            instance_id: &reg.info.id,
        };
        let proven = assertion::verify(reg.credentials.as_ref(), claim, unix_ms(), &self.replays)
            .map_err(Status::unauthenticated)?;
        let registration_token = reg
            .credentials
            .as_ref()
            .map(|c| c.registration_token.clone())
            .unwrap_or_default();
        let this = Arc::clone(self);
        let key = reg.key();
        let display_name = reg.info.display_name.clone();
        let peer = peer.to_owned();
        let limits = limits.clone();
        let decided = tokio::task::spawn_blocking(move || {
            let seen = Sighting {
                tenant: &key.tenant,
                connector: &key.connector,
                instance_id: &key.id,
                public_key: &proven.public_key,
                display_name: &display_name,
                peer: &peer,
            };
            this.decide(&key, &seen, &registration_token, &limits)
        })
        .await;
        decided.unwrap_or_else(|e| Err(Status::internal(format!("the approval check failed: {e}"))))
    }

    fn decide(
        &self,
        key: &InstanceKey,
        seen: &Sighting<'_>,
        registration_token: &str,
        limits: &RegistrationLimits,
    ) -> Result<bool, Status> {
        let store_error = |e: StoreError| Status::internal(e.to_string());
        let public_key: [u8; 32] = seen.public_key.try_into().unwrap_or([0; 32]);
        if self.is_trusted(&public_key) {
            self.store
                .approve_trusted(seen, "hub (supervised sidecar)")
                .map_err(store_error)?;
            return Ok(true);
        }
        let record = self
            .store
            .instance(seen.tenant, seen.connector, seen.instance_id)
            .map_err(store_error)?;
        if let Some(record) = &record {
            if record.public_key != seen.public_key {
                return Err(Status::unauthenticated(format!(
                    "{key} is recorded with another public key (fingerprint {}); this one is {}: \
                     use the instance's own key, or another instance id",
                    fingerprint(&record.public_key),
                    fingerprint(seen.public_key)
                )));
            }
            match record.status {
                Approval::Approved => return Ok(true),
                Approval::Rejected | Approval::Revoked => {
                    return Err(Status::permission_denied(format!(
                        "{key} was {} by an administrator of this hub",
                        record.status.as_str()
                    )));
                }
                Approval::Pending => {}
            }
        }
        if !registration_token.is_empty() {
            return match self.store.redeem(registration_token, seen) {
                Ok(_) => Ok(true),
                Err(RedeemError::Refused(how)) => Err(Status::permission_denied(format!(
                    "{key} was {how} by an administrator of this hub"
                ))),
                Err(RedeemError::Store(e)) => Err(Status::internal(e)),
                Err(e) => Err(Status::unauthenticated(format!(
                    "{e} (SPOKE_REGISTRATION_TOKEN); {key} is not approved"
                ))),
            };
        }
        let caps = PendingCaps {
            per_tenant: limits.max_pending_per_tenant,
            overall: limits.max_pending,
        };
        let full = match self.store.observe(seen, caps).map_err(store_error)? {
            Observed::Recorded(_) => return Ok(false),
            Observed::TenantFull { per_tenant } => format!(
                "tenant `{}` already has {per_tenant} instances pending approval, as many as this hub \
                 allows (--max-pending-per-tenant)",
                seen.tenant
            ),
            Observed::HubFull { overall } => format!(
                "this hub already has {overall} instances pending approval, as many as it allows \
                 (--max-pending)"
            ),
        };
        Err(Status::resource_exhausted(format!(
            "{key} is new and not recorded: {full}; an administrator approves or rejects them \
             (spoke pending), and those not attached are forgotten {} after they were first \
             seen (--pending-expiry); a registration token (SPOKE_REGISTRATION_TOKEN) approves \
             an instance without waiting",
            duration::format(limits.pending_expiry)
        )))
    }
}

//! [`Instance`]: a running connector, and the one way every transport invokes it.
//!
//! A transport (CLI, gRPC, stdio, ...) talks only to this interface: invoke an
//! action by name with JSON bytes or a value, a [`Context`] carrying the
//! request id, deadline and cancellation token, and get back an
//! [`ActionOutput`] or an [`ActionError`]. Around every invocation it enforces:
//!
//! - **panic isolation**: a panic in an action (or in decoding its input)
//!   becomes a `panicked` error carrying the panic message, and the connector
//!   keeps serving. This relies on unwinding: with `panic = "abort"` in your
//!   profile a panic ends the process instead;
//! - **deadlines**: the earlier of the caller's deadline and the action's own
//!   `timeout`; when it passes the context is cancelled and the caller gets
//!   `deadline_exceeded` at once;
//! - **cancellation**: when the caller cancels, the action sees its token
//!   cancelled and has a grace period to return; then it is dropped and the
//!   caller gets `cancelled`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;

use crate::config::ConfigSource;
use crate::connector::{ActionFuture, ActionOutput, AnyConnector, Input, InvokeFn, StartError};
use crate::context::Context;
use crate::encoding::{ActionEncodings, Encoding, input_refused, negotiate};
use crate::error::ActionError;
use crate::manifest::Manifest;
use crate::registry::ConnectorType;
use crate::store::{LocalStore, Store};
use crate::suggest::did_you_mean;

/// How long a cancelled action may take to wind down before it is dropped.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(2);

/// A built, running connector. Cheap to clone.
#[derive(Clone)]
pub struct Instance {
    ty: Arc<ConnectorType>,
    connector: AnyConnector,
    cancel_grace: Duration,
    syncs: Arc<crate::sync::start::SyncSlots>,
    /// Shared with every call's context (one reference count per call).
    store: Arc<Store>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("connector", &self.ty.name())
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Loads the config, builds the connector and runs its init hook.
    pub async fn start(
        ty: Arc<ConnectorType>,
        source: ConfigSource,
    ) -> Result<Instance, StartError> {
        let registration = ty.registration();
        let connector = (registration.build)(source).await?;
        let tenant = std::env::var(crate::env::TENANT)
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| crate::env::DEFAULT_TENANT.to_owned());
        let store = Store::new(
            registration.name,
            tenant,
            registration.buckets,
            Arc::new(LocalStore::from_env(registration.name)),
        );
        Ok(Instance {
            ty,
            connector,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            syncs: Arc::default(),
            store: Arc::new(store),
        })
    }

    /// Keeps the connector's store in `backend` (for `tenant`) instead of
    /// the local files: what a transport with storage of its own (NATS)
    /// does before it serves.
    pub fn with_store_backend(
        mut self,
        tenant: &str,
        backend: Arc<dyn crate::store::StoreBackend>,
    ) -> Self {
        let r = self.ty.registration();
        self.store = Arc::new(Store::new(r.name, tenant, r.buckets, backend));
        self
    }

    /// The connector's store, as `ctx.store()` gives it to its actions.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Sets the grace period a cancelled action gets to return on its own.
    pub fn with_cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// The connector type.
    pub fn connector_type(&self) -> &Arc<ConnectorType> {
        &self.ty
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        self.ty.manifest()
    }

    /// The built connector, for running its producers.
    pub(crate) fn connector_handle(&self) -> &AnyConnector {
        &self.connector
    }

    /// The runs of this instance's syncs (shared by its clones).
    pub(crate) fn sync_slots(&self) -> &Arc<crate::sync::start::SyncSlots> {
        &self.syncs
    }

    /// The grace period a cancelled action (or a stopping producer or sync) gets.
    pub(crate) fn cancel_grace(&self) -> Duration {
        self.cancel_grace
    }

    /// Invokes an action. Input decoding happens now; the returned future
    /// owns everything it needs, so it can be spawned.
    pub fn invoke(
        &self,
        action: &str,
        input: Input<'_>,
        ctx: Context,
    ) -> impl Future<Output = Result<ActionOutput, ActionError>> + Send + 'static {
        let started = match self.ty.action_with_encodings(action) {
            None => Err(self.unknown("action", action, self.ty.visible_action_names())),
            Some((def, encodings)) => agree(action, &input, &ctx, encodings).map(|output| {
                let ctx = match def.timeout_ms.map(Duration::from_millis) {
                    Some(limit) => ctx.narrowed_to(limit),
                    None => ctx,
                };
                ctx.agree_output_encoding(output);
                (self.start_call(def.invoke, input, ctx.clone()), ctx)
            }),
        };
        self.finish(started)
    }

    /// Resolves a search operator's value.
    pub fn resolve(
        &self,
        operator: &str,
        value: &str,
        ctx: Context,
    ) -> impl Future<Output = Result<ActionOutput, ActionError>> + Send + 'static {
        let started = match self.ty.operator(operator) {
            None => Err(self.unknown(
                "search operator",
                operator,
                self.ty.operators().iter().map(|o| o.operator).collect(),
            )),
            Some(def) => {
                let input = json!({ "value": value });
                Ok((
                    self.start_call(def.resolve, Input::Value(&input), ctx.clone()),
                    ctx,
                ))
            }
        };
        self.finish(started)
    }

    fn finish(
        &self,
        started: Result<(ActionFuture, Context), ActionError>,
    ) -> impl Future<Output = Result<ActionOutput, ActionError>> + Send + 'static {
        let grace = self.cancel_grace;
        async move {
            let (future, ctx) = started?;
            supervise(future, ctx, grace).await
        }
    }

    fn start_call(&self, invoke: InvokeFn, input: Input<'_>, ctx: Context) -> ActionFuture {
        ctx.attach_store(&self.store);
        let connector = self.connector.clone();
        match std::panic::catch_unwind(AssertUnwindSafe(|| invoke(connector, input, ctx))) {
            Ok(future) => future,
            Err(payload) => Box::pin(std::future::ready(Err(ActionError::panicked(
                panic_message(&*payload),
            )))),
        }
    }

    fn unknown(&self, kind: &str, name: &str, known: Vec<&'static str>) -> ActionError {
        unknown_name(self.ty.name(), kind, name, &known)
    }
}

/// The output encoding of a call of `action`, or why there is none: the
/// input's encoding is not one the action takes, or the caller accepts none
/// of those it gives. Both are `invalid_input` naming what it supports
/// (`details.supported`).
fn agree(
    action: &str,
    input: &Input<'_>,
    ctx: &Context,
    encodings: ActionEncodings,
) -> Result<Encoding, ActionError> {
    let given = input.encoding();
    if !encodings.input.contains(&given) {
        return Err(input_refused(action, given, encodings.input));
    }
    negotiate(ctx.accept(), encodings.output).ok_or_else(|| {
        ActionError::invalid_input(format!(
            "action `{action}` answers in {}, and the caller accepts only {}",
            Encoding::join(encodings.output, "or"),
            Encoding::join(ctx.accept(), "or")
        ))
        .with_details(json!({ "accept": ctx.accept(), "supported": encodings.output }))
    })
}

async fn supervise(
    future: ActionFuture,
    ctx: Context,
    grace: Duration,
) -> Result<ActionOutput, ActionError> {
    let mut future = AssertUnwindSafe(future).catch_unwind();
    let settle = |r: std::thread::Result<Result<ActionOutput, ActionError>>| {
        r.unwrap_or_else(|p| Err(ActionError::panicked(panic_message(&*p))))
    };
    let deadline = crate::context::sleep_until(ctx.deadline());
    tokio::select! {
        biased;
        result = &mut future => settle(result),
        () = deadline => {
            ctx.cancellation().cancel();
            Err(ActionError::deadline_exceeded(format!("`{}` did not finish before its deadline", ctx.action())))
        }
        () = ctx.cancelled() => match tokio::time::timeout(grace, &mut future).await {
            Ok(result) => settle(result),
            Err(_) => Err(ActionError::cancelled(format!("`{}` was cancelled", ctx.action()))),
        },
    }
}

/// The error for a call of an action (`kind` = `"action"`) or a search
/// operator (`"search operator"`) that connector `connector` does not
/// have: `not_found`, with a did-you-mean and the names there are, which
/// are also its details (`{"actions": [...]}` or `{"search_operators":
/// [...]}`). Transports whose callers learn of a missing name another way
/// (no one listening on its subject) use it too.
///
/// ```
/// use spoke::instance::unknown_name;
/// let e = unknown_name("echo", "action", "ecoh", &["echo"]);
/// assert_eq!(e.message(), "connector `echo` has no action `ecoh`; did you mean `echo`? (actions: echo)");
/// ```
pub fn unknown_name(connector: &str, kind: &str, name: &str, known: &[&str]) -> ActionError {
    let hint = did_you_mean(name, known.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    let list = if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    };
    let key = if kind == "action" {
        "actions"
    } else {
        "search_operators"
    };
    ActionError::not_found(format!(
        "connector `{connector}` has no {kind} `{name}`{hint} ({key}: {list})"
    ))
    .with_details(json!({ key: known }))
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

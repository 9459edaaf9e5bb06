//! Server reflection, `grpc.reflection.v1` and `grpc.reflection.v1alpha`,
//! over the hub's descriptors (`spoke.v1` and `grpc.health.v1`), answering
//! every request in-stream.
//!
//! tonic-reflection 0.14 ends the whole stream with the lookup's status when
//! one lookup fails (an unknown symbol or file name ends it with
//! `NOT_FOUND`), and has no option to do otherwise. The reflection protocol
//! answers a failed lookup with an `ErrorResponse` (the gRPC code number and a
//! message) in the stream, which carries on, and clients such as grpcurl
//! rely on that. So each version here is an adapter: every request on the
//! client's stream is handed to tonic-reflection's own service, which still
//! does the lookups, on a one-request stream of its own (the service is
//! driven in-process through its generated client, with no socket); its
//! answer is passed on as it is, and its error status becomes an
//! `ErrorResponse` that echoes the request (`original_request`) and its host
//! (`valid_host`), as tonic-reflection's answers do. Only an error on the
//! client's own stream ends it.
//!
//! Imports nothing of the hub.

use tonic_reflection::server::Builder;

/// tonic-reflection's builder over the descriptors the hub serves; it adds
/// the reflection service's own descriptor for the version built.
fn descriptors() -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(spoke_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The adapter for one reflection version (`v1`, `v1alpha`): the same code
/// over the two versions' generated types, which differ only in their
/// package. `$build` is the tonic-reflection builder method for the version.
macro_rules! in_stream_reflection {
    ($version:ident, $build:ident, $doc:literal) => {
        #[doc = $doc]
        pub(crate) mod $version {
            use std::pin::Pin;

            use futures_util::stream::{self, Stream, StreamExt};
            use tonic::{Request, Response, Status, Streaming};
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::{
                ErrorResponse, ServerReflectionRequest, ServerReflectionResponse,
            };
            use tonic_reflection::server::$version::{ServerReflection, ServerReflectionServer};

            /// The reflection service to add to the hub's server: the hub's
            /// descriptors, with failed lookups answered in-stream.
            pub(crate) fn service() -> Result<
                ServerReflectionServer<impl ServerReflection>,
                tonic_reflection::server::Error,
            > {
                let lookups = super::descriptors().$build()?;
                Ok(ServerReflectionServer::new(InStream {
                    lookups: ServerReflectionClient::new(lookups),
                }))
            }

            /// tonic-reflection's service `S`, reached in-process through its
            /// generated client.
            type Lookups<S> = ServerReflectionClient<ServerReflectionServer<S>>;

            /// Reflection that hands each request to tonic-reflection's
            /// service and answers every one in-stream, a failure included.
            struct InStream<S> {
                /// tonic-reflection's service, which does the lookups.
                lookups: Lookups<S>,
            }

            /// The answers on one reflection stream, in request order.
            type Answers =
                Pin<Box<dyn Stream<Item = Result<ServerReflectionResponse, Status>> + Send>>;

            #[tonic::async_trait]
            impl<S: ServerReflection> ServerReflection for InStream<S> {
                type ServerReflectionInfoStream = Answers;

                async fn server_reflection_info(
                    &self,
                    request: Request<Streaming<ServerReflectionRequest>>,
                ) -> Result<Response<Answers>, Status> {
                    let requests = request.into_inner();
                    let lookups = self.lookups.clone();
                    // One answer per request, in order; an error on the
                    // client's stream is passed back and ends it.
                    let answers = stream::unfold(Some((requests, lookups)), |open| async move {
                        let (mut requests, mut lookups) = open?;
                        match requests.next().await? {
                            Ok(request) => {
                                let answer = answer(&mut lookups, request).await;
                                Some((Ok(answer), Some((requests, lookups))))
                            }
                            Err(status) => Some((Err(status), None)),
                        }
                    });
                    Ok(Response::new(Box::pin(answers)))
                }
            }

            /// tonic-reflection's answer to `request`, or its failure as an
            /// `ErrorResponse` (the status's code number and message) that
            /// echoes the request and its host.
            async fn answer<S: ServerReflection>(
                lookups: &mut Lookups<S>,
                request: ServerReflectionRequest,
            ) -> ServerReflectionResponse {
                match look_up(lookups, request.clone()).await {
                    Ok(answer) => answer,
                    Err(status) => ServerReflectionResponse {
                        valid_host: request.host.clone(),
                        original_request: Some(request),
                        message_response: Some(MessageResponse::ErrorResponse(ErrorResponse {
                            error_code: status.code() as i32,
                            error_message: status.message().to_owned(),
                        })),
                    },
                }
            }

            /// Asks tonic-reflection's service about `request` alone, on a
            /// stream of its own (so a failure ends only that stream).
            async fn look_up<S: ServerReflection>(
                lookups: &mut Lookups<S>,
                request: ServerReflectionRequest,
            ) -> Result<ServerReflectionResponse, Status> {
                let mut answers = lookups
                    .server_reflection_info(stream::iter([request]))
                    .await?
                    .into_inner();
                answers
                    .message()
                    .await?
                    .ok_or_else(|| Status::internal("the reflection lookup gave no answer"))
            }
        }
    };
}

in_stream_reflection!(
    v1,
    build_v1,
    "`grpc.reflection.v1`, answering failed lookups in-stream."
);
in_stream_reflection!(
    v1alpha,
    build_v1alpha,
    "`grpc.reflection.v1alpha`, answering failed lookups in-stream."
);

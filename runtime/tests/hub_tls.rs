//! Dialing the hub over TLS, against a real TLS gRPC server on loopback
//! whose certificates `rcgen` makes at test time: a trusted CA works, an
//! untrusted one fails with an error that says so.

mod support;

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;
use spoke_runtime::grpc::tls::{HubTls, connect_error, hub_endpoint};
use support::*;

const LIMIT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(5);

/// A CA: its PEM certificate and what signs with it.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for `names` signed by `ca`: (certificate PEM, key PEM).
fn server_cert(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn trusting(pem: &str) -> HubTls {
    HubTls {
        ca_pem: Some(pem.as_bytes().to_vec()),
        server_name: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_attaches_over_tls_to_a_hub_whose_ca_it_trusts() {
    bounded(LIMIT, async {
        let ca = ca("Spoke test CA");
        let (cert, key) = server_cert(&ca, &["127.0.0.1", "localhost"]);
        let mut hub = ScriptedHub::start_tls(&cert, &key).await;
        assert!(hub.url.starts_with("https://"));
        let mut options = options(&hub.url);
        options.tls = trusting(&ca.pem());
        let running = serve(options).await;
        let (mut conn, register) = hub.attach(registered("t1", 10_000, false)).await;
        verified(&register);
        conn.invoke("r1", "echo", json!({"over": "tls"}), 0).await;
        assert_eq!(ok_json(&conn.result().await), json!({"over": "tls"}));
        running.stop();
        while !matches!(
            conn.next().await,
            Some(spoke_proto::v1::connector_frame::Frame::Goodbye(_))
        ) {}
        drop(conn);
        assert!(running.finished().await.is_ok());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_with_a_clear_tls_error_and_nothing_attaches() {
    bounded(LIMIT, async {
        let (cert, key) = server_cert(&ca("The hub's CA"), &["127.0.0.1"]);
        let mut hub = ScriptedHub::start_tls(&cert, &key).await;
        let other = trusting(&ca("Some other CA").pem());

        let err = hub_endpoint(&hub.url, &other, T)
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert_eq!(
            connect_error(&hub.url, &err),
            format!(
                "TLS handshake with {} failed: invalid peer certificate: UnknownIssuer",
                hub.url
            )
        );
        // Nor does the system's trust store know a CA made a moment ago.
        let err = hub_endpoint(&hub.url, &HubTls::default(), T)
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert!(
            connect_error(&hub.url, &err).contains("UnknownIssuer"),
            "{}",
            connect_error(&hub.url, &err)
        );

        // `serve` keeps trying, and never gets a stream up.
        let mut options = options(&hub.url);
        options.tls = other;
        let running = serve(options).await;
        assert!(hub.conn_within(Duration::from_millis(500)).await.is_none());
        running.stop();
        assert!(running.finished().await.is_ok());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_own_certificate_can_be_trusted_and_its_name_given() {
    bounded(LIMIT, async {
        // A self-signed certificate for a name other than the address
        // dialled: the sidecar bridge's case, dialing its own hub on loopback.
        let own = rcgen::generate_simple_self_signed(vec!["hub.example.com".to_owned()]).unwrap();
        let mut hub =
            ScriptedHub::start_tls(&own.cert.pem(), &own.signing_key.serialize_pem()).await;
        let mut tls = trusting(&own.cert.pem());

        let err = hub_endpoint(&hub.url, &tls, T)
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        let text = connect_error(&hub.url, &err);
        assert!(
            text.starts_with(&format!("TLS handshake with {} failed: ", hub.url)),
            "{text}"
        );
        assert!(text.contains("not valid for name \"127.0.0.1\""), "{text}");

        tls.server_name = Some("hub.example.com".to_owned());
        hub_endpoint(&hub.url, &tls, T)
            .unwrap()
            .connect()
            .await
            .expect("the certificate is valid for the name given");
        let mut options = options(&hub.url);
        options.tls = tls;
        let running = serve(options).await;
        let (conn, _) = hub.attach(registered("t1", 10_000, false)).await;
        drop(conn);
        running.stop();
        let _ = running.finished().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_text_hub_says_so() {
    bounded(LIMIT, async {
        let hub = ScriptedHub::start().await;
        let url = hub.url.replace("http://", "https://");
        let tls = trusting(&ca("Any CA").pem());
        let err = hub_endpoint(&url, &tls, T)
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        let text = connect_error(&url, &err);
        assert!(
            text.starts_with(&format!("TLS handshake with {url} failed: ")),
            "{text}"
        );
        assert!(text.contains("does the hub serve TLS"), "{text}");
    })
    .await;
}

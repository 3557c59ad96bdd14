//! TLS in front of the Kafka-protocol broker: a certificate authority made for the test ([`Pki`]) and a tansu
//! broker reachable only through stunnel ([`TlsBroker`]), with or without client certificates required.
//!
//! tansu speaks plaintext only. stunnel accepts TLS on the broker's public port and forwards to tansu's own port;
//! tansu advertises the stunnel port, so that the clients' connections after the bootstrap (to the leaders the
//! metadata names) go through TLS too.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rdkafka::ClientConfig;

use crate::{Broker, free_port};

/// A certificate authority and what it signed, as PEM files in a temporary directory: a broker certificate for
/// `127.0.0.1` and `localhost`, and a client certificate.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Makes a new CA (its own key, so no other `Pki` trusts what it signs) and its two certificates.
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "GoMon test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_certificate = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write PEM file");
        };
        write("ca.pem", ca_certificate.pem());
        for (name, names, purpose) in [
            (
                "broker",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params
                .distinguished_name
                .push(DnType::CommonName, format!("gomon-test-{name}"));
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![purpose];
            let certificate = params.signed_by(&key, &issuer).expect("certificate");
            write(&format!("{name}.pem"), certificate.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        Pki { dir }
    }

    /// The CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The broker's certificate (for `127.0.0.1` and `localhost`).
    pub fn broker_cert_file(&self) -> PathBuf {
        self.dir.path().join("broker.pem")
    }

    /// The broker certificate's key.
    pub fn broker_key_file(&self) -> PathBuf {
        self.dir.path().join("broker-key.pem")
    }

    /// A client certificate signed by the CA.
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The client certificate's key.
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client-key.pem")
    }
}

/// A tansu broker reachable only through TLS (stunnel in front of it, with the certificates of a [`Pki`]);
/// both are killed on drop.
pub struct TlsBroker {
    /// The TLS port on 127.0.0.1, the one tansu advertises.
    pub port: u16,
    /// Whether clients must show a certificate signed by the CA.
    pub mutual: bool,
    ca_file: PathBuf,
    client_cert_file: PathBuf,
    client_key_file: PathBuf,
    dir: tempfile::TempDir,
    stunnel: Option<Child>,
    // Dropped after stunnel.
    _broker: Broker,
}

impl TlsBroker {
    /// TLS with the broker's certificate; clients need only the CA.
    pub fn start(pki: &Pki) -> TlsBroker {
        TlsBroker::start_with(pki, false)
    }

    /// Mutual TLS: stunnel also requires a client certificate signed by the CA (`verify = 2`).
    pub fn start_mutual(pki: &Pki) -> TlsBroker {
        TlsBroker::start_with(pki, true)
    }

    fn start_with(pki: &Pki, mutual: bool) -> TlsBroker {
        let port = free_port();
        let plaintext = free_port();
        let broker = Broker::start_advertising(plaintext, port);
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = format!(
            "foreground = yes\npid =\ndebug = info\n\n[kafka]\naccept = 127.0.0.1:{port}\n\
             connect = 127.0.0.1:{plaintext}\ncert = {}\nkey = {}\n\
             socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n",
            pki.broker_cert_file().display(),
            pki.broker_key_file().display(),
        );
        if mutual {
            config.push_str(&format!(
                "verify = 2\nCAfile = {}\n",
                pki.ca_file().display()
            ));
        }
        let config_file = dir.path().join("stunnel.conf");
        std::fs::write(&config_file, config).expect("stunnel configuration");
        let log = std::fs::File::create(dir.path().join("stunnel.log")).expect("stunnel log");
        let program = std::env::var("STUNNEL").unwrap_or_else(|_| "stunnel".to_owned());
        let stunnel = Command::new(&program)
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("stunnel log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {program} ({error}): stunnel is required \
                     (apt-get install stunnel4; scripts/test.sh installs it)"
                )
            });
        let mut tls = TlsBroker {
            port,
            mutual,
            ca_file: pki.ca_file(),
            client_cert_file: pki.client_cert_file(),
            client_key_file: pki.client_key_file(),
            dir,
            stunnel: Some(stunnel),
            _broker: broker,
        };
        tls.wait_listening();
        tls
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .stunnel
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("stunnel exited with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stunnel did not listen on {} within 30 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT` of the TLS port, for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// stunnel's log so far: the connections it accepted and the handshakes that failed.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("stunnel.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// The CA that signed the broker's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A client configuration that gets through: SSL with the CA, and the client certificate when it is required.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.address())
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", self.ca_file.display().to_string());
        if self.mutual {
            config
                .set(
                    "ssl.certificate.location",
                    self.client_cert_file.display().to_string(),
                )
                .set(
                    "ssl.key.location",
                    self.client_key_file.display().to_string(),
                );
        }
        config
    }

    /// Creates `topic` with `partitions` partitions, through TLS.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        crate::create_topic(self.client_config(), topic, partitions).await;
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        crate::stop(&mut self.stunnel);
    }
}

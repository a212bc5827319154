//! Reading kubeconfigs.

use skiff_client::{Client, Config, Error, Kubeconfig};

/// A self-signed test CA (no key anywhere: it only has to parse).
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBhjCCAS2gAwIBAgIUJIQy6e3QRG1HTlQ8ChW9amDjXbcwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNc2tpZmYtdGVzdC1jYTAgFw0yNjExMjcwMzEyNTRaGA8yMTI2
MTEwMzAzMTI1NFowGDEWMBQGA1UEAwwNc2tpZmYtdGVzdC1jYTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABDKGXr6VnnDP2sz8nhuFt2WPerLrx6maY0DILx/kTLuW
Z1G1MU4ES55GvOy0T5EsGChFjWHCLQHsMqjUjpvp6oGjUzBRMB0GA1UdDgQWBBTi
lSCGk5rA2HwfGy/K2z0DnP3JhTAfBgNVHSMEGDAWgBTilSCGk5rA2HwfGy/K2z0D
nP3JhTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIHyWzG9oKGMB
SqwcQBeXW/o5G8uEfwG3T7ucPsWODExvAiB7tyx7uR7AvRIZb9GawIWl0hcZWk3T
EocB6Vxluqg67g==
-----END CERTIFICATE-----
";

fn kubeconfig(ca_data: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://10.0.0.1:6443
- name: skiff
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: {ca_data}
users:
- name: admin
  user:
    token: s3cret
contexts:
- name: other
  context:
    cluster: other
    user: admin
- name: skiff
  context:
    cluster: skiff
    user: admin
    namespace: apps
current-context: skiff
"
    )
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn current_context_gives_server_token_ca_and_namespace() {
    let config =
        Config::from_kubeconfig_str(&kubeconfig(&base64(CA_PEM.as_bytes()))).expect("parse");
    assert_eq!(config.server.as_str(), "https://127.0.0.1:6443/");
    assert_eq!(config.token.as_deref(), Some("s3cret"));
    assert_eq!(config.ca_pem.as_deref(), Some(CA_PEM.as_bytes()));
    assert_eq!(config.default_namespace, "apps");
    let client = Client::new(config).expect("the CA is valid PEM");
    assert_eq!(client.server(), "https://127.0.0.1:6443");
    assert_eq!(client.default_namespace(), "apps");

    let other = Kubeconfig::from_yaml(&kubeconfig(""))
        .expect("parse")
        .to_config(Some("other"), None)
        .expect("other");
    assert_eq!(other.server.as_str(), "https://10.0.0.1:6443/");
    assert_eq!(other.default_namespace, "default");
    assert_eq!(other.ca_pem, None);
}

#[test]
fn file_paths_are_relative_to_the_kubeconfig() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), CA_PEM).expect("write ca");
    std::fs::write(dir.path().join("token"), "from-file\n").expect("write token");
    let text = "clusters:
- name: c
  cluster: { server: 'https://h:1', certificate-authority: ca.pem }
users:
- name: u
  user: { tokenFile: token }
contexts:
- name: x
  context: { cluster: c, user: u }
current-context: x
";
    let path = dir.path().join("config");
    std::fs::write(&path, text).expect("write config");
    let config = Config::from_kubeconfig_file(&path).expect("parse");
    assert_eq!(config.ca_pem.as_deref(), Some(CA_PEM.as_bytes()));
    assert_eq!(config.token.as_deref(), Some("from-file"));
}

#[test]
fn a_written_kubeconfig_reads_back() {
    let written = Kubeconfig::single(
        "skiff",
        "https://127.0.0.1:6443",
        Some(CA_PEM.as_bytes()),
        Some("tok"),
    )
    .to_yaml()
    .expect("yaml");
    assert!(written.contains("current-context: skiff"), "{written}");
    assert!(written.contains("certificate-authority-data:"), "{written}");
    let config = Config::from_kubeconfig_str(&written).expect("parse");
    assert_eq!(config.token.as_deref(), Some("tok"));
    assert_eq!(config.ca_pem.as_deref(), Some(CA_PEM.as_bytes()));
}

#[test]
fn bad_kubeconfigs_say_what_is_wrong() {
    let no_context = kubeconfig("").replace("current-context: skiff", "current-context: nope");
    let error = Config::from_kubeconfig_str(&no_context).expect_err("missing context");
    assert!(
        matches!(error, Error::Kubeconfig { .. }) && error.to_string().contains("\"nope\""),
        "{error}"
    );

    let error = Config::from_kubeconfig_str(&kubeconfig("not-base64!")).expect_err("bad base64");
    assert!(error.to_string().contains("not base64"), "{error}");

    let error = Config::from_kubeconfig_str("clusters: 5").expect_err("not a kubeconfig");
    assert!(matches!(error, Error::Kubeconfig { .. }), "{error}");

    let garbage =
        Config::from_kubeconfig_str(&kubeconfig(&base64(b"not a certificate"))).expect("parses");
    let error = Client::new(garbage).expect_err("the CA is not PEM");
    assert!(matches!(error, Error::Config { .. }), "{error}");
}

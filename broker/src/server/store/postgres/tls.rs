//! TLS to the database: required for any server that is not on this host
//! (a Unix socket or a loopback address may go in the clear, as the API
//! may on loopback), verified by rustls against the webpki roots plus the
//! CA in `[server] database_ca`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;

/// Whether `host` is this machine: a Unix socket directory, `localhost`,
/// or a loopback address.
fn is_local(host: &Host) -> bool {
    match host {
        // Unix sockets exist only there (so does the variant).
        #[cfg(unix)]
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// Whether a connection made with `config` leaves this machine.
pub fn leaves_host(config: &tokio_postgres::Config) -> bool {
    let addrs = config.get_hostaddrs();
    let by_name = config.get_hosts().iter().any(|h| !is_local(h));
    let by_addr = addrs.iter().any(|ip| !ip.is_loopback());
    by_name || by_addr
}

/// Refuses a connection string that would send the database's traffic
/// off this host in the clear (`sslmode=disable` with a remote host).
pub fn check(config: &tokio_postgres::Config) -> Result<(), String> {
    if leaves_host(config) && config.get_ssl_mode() == SslMode::Disable {
        return Err(
            "sslmode=disable with a host that is not this machine: the database must be reached over TLS (or a Unix socket)"
                .into(),
        );
    }
    Ok(())
}

/// `config` as it is used: TLS required (never merely preferred) when
/// the connection leaves this host.
pub fn enforce(mut config: tokio_postgres::Config) -> Result<tokio_postgres::Config, StoreError> {
    check(&config).map_err(|e| StoreError::Postgres(format!("database_url: {e}")))?;
    if leaves_host(&config) {
        config.ssl_mode(SslMode::Require);
    }
    Ok(config)
}

/// The rustls connector: the webpki roots, plus the PEM certificates in
/// `ca` when given.
pub fn connector(ca: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| StoreError::Postgres(format!("database_ca {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(StoreError::Postgres(format!(
                "database_ca {}: no certificate in it",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                StoreError::Postgres(format!("database_ca {}: {e}", path.display()))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Postgres(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> tokio_postgres::Config {
        url.parse().unwrap()
    }

    #[test]
    fn only_a_remote_host_needs_tls_and_cannot_turn_it_off() {
        for local in [
            "host=/run/postgresql dbname=s",
            "host=127.0.0.1 dbname=s sslmode=disable",
            "host=localhost dbname=s",
            "postgresql://u@[::1]/s",
        ] {
            assert!(!leaves_host(&parse(local)), "{local}");
            assert!(check(&parse(local)).is_ok(), "{local}");
        }
        let remote = parse("host=db.example.com dbname=s");
        assert!(leaves_host(&remote));
        assert_eq!(enforce(remote).unwrap().get_ssl_mode(), SslMode::Require);
        let clear = parse("postgresql://u@db.example.com/s?sslmode=disable");
        assert!(check(&clear).unwrap_err().contains("TLS"));
        let by_addr = parse("host=localhost hostaddr=192.0.2.7 dbname=s");
        assert!(leaves_host(&by_addr));
    }
}

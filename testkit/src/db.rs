//! A new, empty database per test on the project's PostgreSQL server (`DATABASE_URL`, which
//! `scripts/test` sets to the private cluster it starts). Names start with `test_`, so
//! `scripts/pg clean` can drop what tests leave behind.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

/// The test server's URL; panics with what to do when it is not set.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run the tests through `scripts/test`, which starts the \
             project's PostgreSQL cluster, or point DATABASE_URL at a server you own"
        )
    })
}

/// A database made for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    /// Connection options for it (host, port, user and TLS of the server's URL).
    pub options: PgConnectOptions,
    /// The same as a URL, for child processes that read `DATABASE_URL`.
    pub url: String,
}

impl TestDatabase {
    /// Creates `test_<random>` on the server named by `DATABASE_URL`.
    pub async fn create() -> Self {
        let server = server_url();
        let name = format!("test_{:016x}{:08x}", random_u64(), std::process::id());
        let options = PgConnectOptions::from_str(&server).expect("DATABASE_URL parses");
        let mut conn = PgConnection::connect_with(&options.clone().database("postgres"))
            .await
            .expect("connect to the maintenance database");
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create test database");
        // The URL of the same server with the database path replaced; the query (a socket
        // directory, a port) is kept as it is.
        let mut url = url::Url::parse(&server).expect("DATABASE_URL is a URL");
        url.set_path(&name);
        TestDatabase {
            options: options.database(&name),
            url: url.into(),
            name,
        }
    }

    /// Drops the database, closing its other connections first (a benchmark's server).
    pub async fn drop_database(self) {
        let mut conn = PgConnection::connect_with(&self.options.clone().database("postgres"))
            .await
            .expect("connect to the maintenance database");
        conn.execute(format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name).as_str())
            .await
            .expect("drop test database");
    }

    /// [`TestDatabase::create`] for tests without an async runtime.
    pub fn create_blocking() -> Self {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(Self::create())
    }
}

/// Unique enough for database names across parallel tests and processes.
fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

//! `labeler`: command-line entry point; parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use labeler::{Application, Settings, startup};

/// The jielong labeling web app (actix-web + PostgreSQL).
#[derive(Debug, Parser)]
#[command(name = "labeler", version)]
struct Cli {
    /// Settings file; LABELER_HOST, LABELER_PORT and DATABASE_URL override it.
    #[arg(
        long,
        global = true,
        default_value = "configs/labeler.toml",
        env = "LABELER_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations, then serve HTTP until interrupted.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let settings = Settings::load(&cli.config)?;
    match cli.command {
        Command::Serve => {
            let app = Application::build(settings.clone()).await?;
            tracing::info!(
                "labeler listening on http://{}:{}",
                settings.server.host,
                app.port()
            );
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let pool = startup::connect(&settings)?;
            startup::migrate(&pool).await?;
            let applied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&pool)
                    .await?;
            println!("database is up to date ({applied} migration(s) applied)");
        }
    }
    Ok(())
}

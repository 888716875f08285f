//! Server-rendered pages (minijinja, auto-escaping every value) and their static files.

use actix_web::web;
use anyhow::Result;

/// The page templates, compiled once at start-up.
#[derive(Debug)]
pub struct Templates {
    env: minijinja::Environment<'static>,
}

impl Templates {
    pub fn new() -> Result<Self> {
        let env = minijinja::Environment::new();
        Ok(Self { env })
    }

    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String> {
        Ok(self.env.get_template(name)?.render(ctx)?)
    }
}

pub fn configure(_cfg: &mut web::ServiceConfig) {}

//! The two stores behind the domain: [`postgres::PgStore`] (durable truth) and
//! [`redis::RedisStore`] (hot state). Every SQL statement and every Redis key, script and
//! channel lives in this module and nowhere else.

pub mod keys;
pub mod mcp;
pub mod postgres;
pub mod redis;
pub mod sync_pg;
pub mod sync_redis;

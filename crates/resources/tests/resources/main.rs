//! Providers against real infrastructure: the PostgreSQL server on 127.0.0.1:5432, a fake Turso Platform API on
//! 127.0.0.1, and files in a temporary directory.

mod helpers;
mod postgres;
mod sqlite;
mod turso;

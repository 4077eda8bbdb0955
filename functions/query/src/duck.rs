//! DuckDB connections set up for natlake: no extension downloads, home and temp on scratch.

use std::path::Path;

use duckdb::Connection;

use crate::QueryError;

/// Opens an in-memory DuckDB with its home and temp directories under `scratch` (Lambda allows
/// writes only to /tmp) and extension auto-install off (there is no network for it). Parquet
/// footers are cached (DuckDB checks each file's modification time before reusing one).
pub fn connect(scratch: &Path) -> Result<Connection, QueryError> {
    let config = duckdb::Config::default().enable_autoload_extension(false)?;
    let conn = Connection::open_in_memory_with_flags(config)?;
    let dir = scratch.join("duckdb");
    std::fs::create_dir_all(&dir)?;
    let d = quote(&dir.display().to_string());
    conn.execute_batch(&format!("SET home_directory = {d}; SET temp_directory = {d}; SET autoinstall_known_extensions = false; SET parquet_metadata_cache = true;"))?;
    Ok(conn)
}

/// A SQL string literal. Only for paths natlake itself built; user input is always bound.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `['a', 'b']` for read_parquet.
pub fn path_list<'a>(paths: impl IntoIterator<Item = &'a Path>) -> String {
    let items: Vec<String> = paths
        .into_iter()
        .map(|p| quote(&p.display().to_string()))
        .collect();
    format!("[{}]", items.join(", "))
}

//! DuckDB connections set up for natlake: no extension downloads, home and temp on scratch.

use std::path::Path;

use duckdb::Connection;

use crate::QueryError;

/// Opens an in-memory DuckDB with its home and temp directories under `scratch` (Lambda allows
/// writes only to /tmp) and extension auto-install off (there is no network for it). Parquet
/// footers are cached: DuckDB reuses one only while the file's device, inode, size and
/// modification time are unchanged, and natlake replaces objects by rename (a new inode).
///
/// GLOBAL: a plain `SET` of a session-scoped setting holds for this connection only, not for
/// the clones [`crate::Lake::connection`] hands out, which then parsed every file's footer
/// twice per query (bind and scan: ~45 % of a lookup's DuckDB CPU on the bench's lake).
pub fn connect(scratch: &Path) -> Result<Connection, QueryError> {
    let config = duckdb::Config::default().enable_autoload_extension(false)?;
    let conn = Connection::open_in_memory_with_flags(config)?;
    let dir = scratch.join("duckdb");
    std::fs::create_dir_all(&dir)?;
    let d = quote(&dir.display().to_string());
    conn.execute_batch(&format!("SET GLOBAL home_directory = {d}; SET GLOBAL temp_directory = {d}; SET GLOBAL autoinstall_known_extensions = false; SET GLOBAL parquet_metadata_cache = true;"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings hold for connections cloned from the first one, as lookups use them.
    #[test]
    fn clones_share_the_settings() {
        let scratch = tempfile::tempdir().unwrap();
        let base = connect(scratch.path()).unwrap();
        let clone = base.try_clone().unwrap();
        let get = |name: &str| -> String {
            clone
                .query_row(
                    &format!("SELECT current_setting('{name}')::VARCHAR"),
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(get("parquet_metadata_cache"), "true");
        let dir = scratch.path().join("duckdb").display().to_string();
        assert_eq!(get("home_directory"), dir);
        assert_eq!(get("temp_directory"), dir);
    }
}

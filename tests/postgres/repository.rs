//! Rules of the repository itself: the documentation's links lead to files
//! that exist, every setting has its row, the README stays short; the code
//! keeps its direction (crates depend the way data flows: the read path
//! never on the write path; no module cycles within a crate) and its files
//! short.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every page: the README, the changelog, the infrastructure's README and
/// everything under `docs/`.
fn pages() -> Vec<PathBuf> {
    let root = repository();
    let mut pages = vec![
        root.join("README.md"),
        root.join("CHANGELOG.md"),
        root.join("infrastructure/README.md"),
    ];
    let mut folders = vec![root.join("docs")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("docs/") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages
}

/// The targets of a page's markdown links that name a file of the
/// repository (not a web address or an anchor of the page itself).
fn local_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    for (at, _) in text.match_indices("](") {
        let rest = &text[at + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = &rest[..end];
        if target.contains(char::is_whitespace)
            || target.starts_with('#')
            || target.contains("://")
            || target.starts_with("mailto:")
        {
            continue;
        }
        links.push(target.split('#').next().unwrap().to_string());
    }
    links
}

#[test]
fn every_linked_file_exists() {
    let pages = pages();
    assert!(pages.len() > 20, "{pages:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for link in local_links(&text) {
            checked += 1;
            if !page.parent().unwrap().join(&link).exists() {
                broken.push(format!("{}: {link}", page.display()));
            }
        }
    }
    assert!(checked > 30, "only {checked} links found");
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}

#[test]
fn links_are_found_and_anchors_dropped() {
    let text = "see [a](../a.md#part), [web](https://x.org), [here](#top) and [b](b/)";
    assert_eq!(local_links(text), ["../a.md", "b/"]);
}

/// The README stays a front door: at most 250 lines.
#[test]
fn the_readme_is_short() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; at most 250");
}

/// Every setting the code reads, as its doc comment names it
/// (`/// \`NAME\` (default): …`), has a row in the operators' configuration
/// page.
#[test]
fn every_setting_is_in_the_configuration_page() {
    let root = repository();
    let page = std::fs::read_to_string(root.join("docs/operate/configuration.md")).unwrap();
    // Set by Lambda itself, not by an operator.
    const SET_BY_LAMBDA: &[&str] = &["AWS_LAMBDA_FUNCTION_NAME"];
    let mut sources = vec![root.join("api/src/settings.rs")];
    for entry in std::fs::read_dir(root.join("core/src/settings")).unwrap() {
        sources.push(entry.unwrap().path());
    }
    let mut named = Vec::new();
    for source in sources {
        let text = std::fs::read_to_string(&source).unwrap();
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("/// `") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.len() > 2 && rest[name.len()..].starts_with('`') {
                named.push(name);
            }
        }
    }
    assert!(named.len() > 50, "only {} settings found", named.len());
    let missing: Vec<&String> = named
        .iter()
        .filter(|name| !SET_BY_LAMBDA.contains(&name.as_str()) && !page.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/operate/configuration.md: {missing:?}"
    );
}

/// The library's source files (tests excluded), relative to the repository.
fn library_files() -> Vec<String> {
    let root = repository();
    let mut files = Vec::new();
    let mut folders: Vec<PathBuf> = [
        "core/src",
        "aws/src",
        "ingest/src",
        "search/src",
        "api/src",
        "cli/src",
        "local-runner/src",
        "mocks/src",
    ]
    .iter()
    .map(|folder| root.join(folder))
    .collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).unwrap();
                files.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    files
}

/// Each workspace member's docpipe crates, by `cargo metadata`.
fn docpipe_dependencies() -> Vec<(String, Vec<String>)> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repository())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{output:?}");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                // Normal dependencies: what the crate links (tests may use more).
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|name| name.starts_with("docpipe-"))
                .map(String::from)
                .collect();
            (package["name"].as_str().unwrap().to_string(), dependencies)
        })
        .collect()
}

/// The crates depend in the direction data flows: `core` on no other,
/// `aws` on `core`, the write path (`ingest`) and the read path (`search`)
/// on those two and never on each other; and a function links only its own
/// path's crates (the stage functions no search, no API).
#[test]
fn the_crates_depend_in_the_direction_data_flows() {
    let allowed: &[(&str, &[&str])] = &[
        ("docpipe-core", &[]),
        ("docpipe-aws", &["docpipe-core"]),
        ("docpipe-ingest", &["docpipe-core", "docpipe-aws"]),
        ("docpipe-search", &["docpipe-core", "docpipe-aws"]),
        (
            "docpipe-lambda",
            &["docpipe-core", "docpipe-aws", "docpipe-ingest"],
        ),
    ];
    let stage_functions = ["ingest", "parse", "chunk", "embed", "sweeper", "migrate"];
    let members = docpipe_dependencies();
    assert!(members.len() > 10, "{members:?}");
    let mut broken = Vec::new();
    for (name, dependencies) in &members {
        let rule = allowed.iter().find(|(crate_name, _)| crate_name == name);
        let stage_function = stage_functions.contains(&name.as_str());
        for dependency in dependencies {
            let breaks = match rule {
                Some((_, may)) => !may.contains(&dependency.as_str()),
                None if stage_function => {
                    ["docpipe-search", "docpipe-api"].contains(&dependency.as_str())
                }
                None => false,
            };
            if breaks {
                broken.push(format!("{name} depends on {dependency}"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:?}");
}

/// The top-level modules a library file's code names (not its comments,
/// whose links are for the reader, nor its tests).
fn modules_named(code: &str) -> Vec<String> {
    let mut named = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let name: String = line[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                named.push(name);
            }
        }
    }
    named
}

/// Within each library crate, no two top-level modules need each other
/// (directly or around a loop): each can be read, and moved, on its own.
/// One pair may: an axum extractor (`auth`) reads the state it is
/// extracted from, which holds it.
#[test]
fn no_module_cycles_within_a_crate() {
    let mut found = Vec::new();
    for krate in [
        "core",
        "aws",
        "ingest",
        "search",
        "api",
        "cli",
        "local-runner",
        "mocks",
    ] {
        let source = format!("{krate}/src/");
        let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for file in library_files().iter().filter(|f| f.starts_with(&source)) {
            let module = file[source.len()..]
                .split(['/', '.'])
                .next()
                .unwrap()
                .to_string();
            let text = std::fs::read_to_string(repository().join(file)).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for other in modules_named(code) {
                if other != module && !["lib", "main"].contains(&module.as_str()) {
                    edges.entry(module.clone()).or_default().insert(other);
                }
            }
        }
        // A module is on a cycle if it can reach itself.
        for start in edges.keys() {
            let mut seen = std::collections::BTreeSet::new();
            let mut next: Vec<&String> = edges[start].iter().collect();
            while let Some(module) = next.pop() {
                if module == start {
                    found.push(format!("{krate}: {start}"));
                    break;
                }
                if seen.insert(module.clone()) {
                    next.extend(edges.get(module).into_iter().flatten());
                }
            }
        }
    }
    const AXUM_EXTRACTOR: &[&str] = &["api: auth", "api: state"];
    found.retain(|cycle| !AXUM_EXTRACTOR.contains(&cycle.as_str()));
    assert!(found.is_empty(), "module cycles: {found:?}");
}

/// No library file runs past 400 lines before its tests.
#[test]
fn library_files_stay_under_400_lines() {
    let mut found = Vec::new();
    for file in library_files() {
        let text = std::fs::read_to_string(repository().join(&file)).unwrap();
        let lines = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .count();
        if lines > 400 {
            found.push(file);
        }
    }
    assert!(found.is_empty(), "files over 400 lines: {found:?}");
}

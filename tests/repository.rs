//! Rules of the repository itself: the documentation's links lead to files
//! that exist, every setting has its row, the README stays short; the code
//! keeps its direction (the read path never reaches into the write path) and
//! its files short. Where the code breaks a rule today, the break is named
//! in a list the layout work empties; a break fixed must leave the list, so
//! the list can only shrink.

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
        "shared/src",
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

/// Each break of a rule today must still be one (so the list only shrinks),
/// and nothing else may break it.
fn only_known(rule: &str, found: Vec<String>, known: &[&str]) {
    let unknown: Vec<&String> = found
        .iter()
        .filter(|f| !known.contains(&f.as_str()))
        .collect();
    let fixed: Vec<&&str> = known
        .iter()
        .filter(|k| !found.iter().any(|f| f == *k))
        .collect();
    assert!(unknown.is_empty(), "{rule}: new breaks {unknown:?}");
    assert!(
        fixed.is_empty(),
        "{rule}: fixed, so take them off the list: {fixed:?}"
    );
}

/// Search (the read path) never imports the write path's modules, and the
/// write path never imports search's.
#[test]
fn the_read_and_write_paths_do_not_reach_into_each_other() {
    const WRITE: &[&str] = &["pipeline", "parsing", "chunking", "drivers"];
    const READ: &[&str] = &["search", "rerank"];
    let module_of = |file: &str| -> Option<&'static str> {
        let rest = file.strip_prefix("shared/src/")?;
        let first = rest.split(['/', '.']).next()?;
        WRITE.iter().chain(READ).find(|m| **m == first).copied()
    };
    let mut found = Vec::new();
    for file in library_files() {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let forbidden: &[&str] = if READ.contains(&module) { WRITE } else { READ };
        let text = std::fs::read_to_string(repository().join(&file)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for line in code.lines().filter(|l| l.trim_start().starts_with("use ")) {
            for other in forbidden {
                if line.contains(&format!("crate::{other}::"))
                    || line.contains(&format!("crate::{other}}}"))
                    || line.contains(&format!("crate::{other};"))
                {
                    found.push(format!("{file} uses {other}"));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    only_known(
        "read and write paths",
        found,
        &[],
    );
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
    only_known(
        "files over 400 lines",
        found,
        &[
            "core/src/store/db.rs",
            "core/src/store/jobs.rs",
            "shared/src/search/filter.rs",
            "shared/src/search/mod.rs",
        ],
    );
}

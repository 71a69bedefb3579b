//! Each format read end to end over real Postgres, from a fixture the test
//! writes: the document completes, its text is there without markup, and a
//! phrase from one page (slide, sheet, section) is found with that page
//! (slide, sheet, heading path) in its hit.

use docpipe_core::JobState;
use docpipe_core::settings::PipelineSettings;
use docpipe_search::SearchHit;
use docpipe_tests::corpus::pdf_of_pages;
use docpipe_tests::office::{self, Slide, w_paragraph, w_table};
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, search_as};

/// A database with `name` (holding `bytes`) ingested for tenant `acme`.
async fn ingested(name: &str, bytes: &[u8]) -> (TestDb, PipelineSettings) {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let dir = ScratchDir::new();
    dir.write(name, bytes);
    let (_, outcomes) = ingest_locally(&config, "acme", std::slice::from_ref(&dir.0)).await;
    let outcome = &outcomes[&format!("uploads/acme/{name}")];
    assert_eq!(
        outcome.state,
        JobState::Complete,
        "{name}: {:?}",
        outcome.error_message
    );
    (test_db, config)
}

async fn top_hit(config: &PipelineSettings, query: &str) -> SearchHit {
    let hits = search_as(config, "acme", query, 3).await;
    hits.into_iter().next().expect("a hit")
}

fn assert_no_markup(hit: &SearchHit, markup: &[&str]) {
    for residue in markup {
        assert!(!hit.text.contains(residue), "{residue:?} in {:?}", hit.text);
    }
}

#[tokio::test]
async fn a_pdf_hit_names_its_page() {
    let pages: Vec<Vec<String>> = [
        "The harbour master keeps the tide log every morning.",
        "Fog signals sound one long blast every thirty seconds.",
        "The lantern room is painted red each spring by the keeper.",
    ]
    .iter()
    .map(|line| vec![line.to_string()])
    .collect();
    let (_db, config) = ingested("guide.pdf", &pdf_of_pages(&pages)).await;
    let hit = top_hit(&config, "lantern room painted red each spring").await;
    assert!(hit.text.contains("lantern room"), "{hit:?}");
    assert_eq!((hit.page_start, hit.page_end), (Some(3), Some(3)));
    assert_no_markup(&hit, &["Tj", "BT", "ET"]);
    let hit = top_hit(&config, "fog signals long blast").await;
    assert_eq!((hit.page_start, hit.page_end), (Some(2), Some(2)));
}

#[tokio::test]
async fn a_markdown_hit_names_its_heading_path() {
    let text = "# Installation\n\nDocpipe installs in a minute.\n\n\
                ## On Linux\n\nRun the package manager and start the daemon.\n\n\
                ## On Mac\n\nDrag the application into the folder.\n\n\
                # Usage\n\nUpload a file and search it.\n";
    let (_db, config) = ingested("guide.md", text.as_bytes()).await;
    let hit = top_hit(&config, "run the package manager and start the daemon").await;
    assert_eq!(hit.headings, ["Installation", "On Linux"]);
    assert_eq!(hit.page_start, None);
    let hit = top_hit(&config, "drag the application into the folder").await;
    assert_eq!(hit.headings, ["Installation", "On Mac"]);
}

#[tokio::test]
async fn an_html_hit_names_its_heading_path() {
    let html = "<html><body><h1>Harbour guide</h1><p>Welcome aboard.</p>\
                <h2>Safety</h2><p>Wear a <b>life jacket</b> on the pontoon at all times.</p>\
                <h2>Mooring</h2><p>Tie up at the <i>visitor berths</i> only.</p></body></html>";
    let (_db, config) = ingested("guide.html", html.as_bytes()).await;
    let hit = top_hit(&config, "wear a life jacket on the pontoon").await;
    assert_eq!(hit.headings, ["Harbour guide", "Safety"]);
    assert_no_markup(&hit, &["<", ">", "#"]);
}

#[tokio::test]
async fn a_docx_reads_headings_lists_tables_headers_and_footnotes() {
    let body = [
        w_paragraph(Some("Heading1"), "Installation"),
        w_paragraph(None, "Docpipe installs in a minute."),
        w_paragraph(Some("Heading2"), "On Linux"),
        w_paragraph(None, "Run the package manager and start the daemon."),
        w_table(&[&["Port", "Service"], &["5432", "Postgres database"]]),
        w_paragraph(Some("Heading1"), "Usage"),
        w_paragraph(None, "Upload a file and search it."),
    ]
    .concat();
    let docx = office::docx(&body, "Confidential harbour memo", "Tides per the almanac.");
    let (_db, config) = ingested("guide.docx", &docx).await;
    let hit = top_hit(&config, "run the package manager and start the daemon").await;
    assert_eq!(hit.headings, ["Installation", "On Linux"]);
    let hit = top_hit(&config, "5432 postgres database").await;
    assert_eq!(hit.headings, ["Installation", "On Linux"]);
    assert!(
        hit.text.contains("5432 | Postgres database"),
        "{:?}",
        hit.text
    );
    assert_no_markup(&hit, &["<", "w:", "xml"]);
    let hit = top_hit(&config, "confidential harbour memo").await;
    assert_eq!(hit.text.matches("Confidential harbour memo").count(), 1);
    let hit = top_hit(&config, "tides per the almanac").await;
    assert!(
        hit.text.contains("Tides per the almanac."),
        "{:?}",
        hit.text
    );
}

#[tokio::test]
async fn a_pptx_hit_names_its_slide_in_presentation_order() {
    let pptx = office::pptx(&[
        Slide {
            title: "Welcome",
            body: &["The harbour opens at dawn."],
            notes: None,
        },
        Slide {
            title: "Mooring rules",
            body: &["Visitors tie up at the outer pontoon."],
            notes: Some("Remind them about the fee"),
        },
        Slide {
            title: "Questions",
            body: &["Ask the harbour master."],
            notes: None,
        },
    ]);
    let (_db, config) = ingested("deck.pptx", &pptx).await;
    let hit = top_hit(&config, "visitors tie up at the outer pontoon").await;
    assert_eq!((hit.page_start, hit.page_end), (Some(2), Some(2)));
    assert_eq!(hit.headings, ["Mooring rules"]);
    let hit = top_hit(&config, "remind them about the fee").await;
    assert_eq!((hit.page_start, hit.page_end), (Some(2), Some(2)));
    assert!(
        hit.text.contains("Remind them about the fee"),
        "{:?}",
        hit.text
    );
    assert_no_markup(&hit, &["<", "a:t"]);
}

#[tokio::test]
async fn a_spreadsheet_hit_names_its_sheet_and_rows_with_the_header() {
    let q2: &[&[&str]] = &[&["Region", "Revenue"], &["North", "100"]];
    let q3: &[&[&str]] = &[
        &["Region", "Revenue", "Note"],
        &["North", "120", "steady"],
        &["South", "340", "record lighthouse tourism"],
    ];
    let (_db, config) = ingested("sales.xlsx", &office::xlsx(&[("Q2", q2), ("Q3", q3)])).await;
    let hit = top_hit(&config, "record lighthouse tourism").await;
    assert_eq!(hit.headings, ["Q3"]);
    assert_eq!((hit.page_start, hit.page_end), (Some(2), Some(2)));
    assert_eq!((hit.row_start, hit.row_end), (Some(2), Some(3)));
    assert!(
        hit.text
            .contains("Region | Revenue | Note\nNorth | 120 | steady"),
        "{:?}",
        hit.text
    );
}

#[tokio::test]
async fn an_epub_is_read_in_spine_order_through_the_html_path() {
    let book = office::epub(
        &[
            ("The Harbour", "Boats rest in the inner basin overnight."),
            (
                "The Lighthouse",
                "The keeper climbs one hundred steps at dusk.",
            ),
        ],
        false,
    );
    let (_db, config) = ingested("book.epub", &book).await;
    let hit = top_hit(&config, "the keeper climbs one hundred steps at dusk").await;
    assert_eq!(hit.headings, ["The Lighthouse"]);
    assert_eq!(hit.chunk_index, 1, "the spine's second chapter");
    assert_no_markup(&hit, &["<", "#", "color"]);
}

#[tokio::test]
async fn csv_tsv_json_and_jsonl_are_read_as_rows_and_records() {
    let csv = "name;role\nAda;lighthouse keeper\nBob;harbour pilot\n";
    let (_db, config) = ingested("crew.csv", csv.as_bytes()).await;
    let hit = top_hit(&config, "Bob harbour pilot").await;
    assert!(hit.text.contains("name | role\n"), "{:?}", hit.text);
    assert!(hit.text.contains("Bob | harbour pilot"), "{:?}", hit.text);
    assert_eq!(hit.row_start, Some(2));

    let tsv = "ship\tberth\nAurora\tnorth quay\n";
    let (_db, config) = ingested("berths.tsv", tsv.as_bytes()).await;
    let hit = top_hit(&config, "Aurora north quay").await;
    assert!(hit.text.contains("Aurora | north quay"), "{:?}", hit.text);

    let json = r#"{"vessels": [{"name": "Aurora", "home": {"port": "Falmouth"}}]}"#;
    let (_db, config) = ingested("fleet.json", json.as_bytes()).await;
    let hit = top_hit(&config, "Aurora Falmouth").await;
    assert!(
        hit.text.contains("vessels[0].home.port: Falmouth"),
        "{:?}",
        hit.text
    );
    assert_no_markup(&hit, &["{", "\""]);

    let jsonl = "{\"event\": \"storm warning\"}\n{\"event\": \"fog at noon\"}\n";
    let (_db, config) = ingested("log.jsonl", jsonl.as_bytes()).await;
    let hit = top_hit(&config, "fog at noon").await;
    // Each record is a paragraph of its own (short ones share a chunk).
    assert!(
        hit.text
            .contains("event: storm warning\n\nevent: fog at noon"),
        "{:?}",
        hit.text
    );
}

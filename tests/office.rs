//! Office files written by the tests: the few XML parts each format needs,
//! zipped (Word, PowerPoint and Excel open files of exactly this shape).

use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;

/// A ZIP of `files` (name, contents), deflated.
pub fn zip_of(files: &[(impl AsRef<str>, impl AsRef<[u8]>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, contents) in files {
        zip.start_file(name.as_ref(), SimpleFileOptions::default())
            .unwrap();
        zip.write_all(contents.as_ref()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

/// A Word paragraph of `text` in `style` (`Heading1`…), if any.
pub fn w_paragraph(style: Option<&str>, text: &str) -> String {
    let style = style.map_or(String::new(), |s| {
        format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#)
    });
    format!(r#"<w:p>{style}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
}

/// A Word table of `rows`.
pub fn w_table(rows: &[&[&str]]) -> String {
    let rows: String = rows
        .iter()
        .map(|cells| {
            let cells: String = cells
                .iter()
                .map(|c| format!("<w:tc>{}</w:tc>", w_paragraph(None, c)))
                .collect();
            format!("<w:tr>{cells}</w:tr>")
        })
        .collect();
    format!("<w:tbl>{rows}</w:tbl>")
}

/// A `.docx` whose body is `body` (paragraphs and tables), with a header
/// and a footnote, and the styles naming Heading1..3 as headings.
pub fn docx(body: &str, header: &str, footnote: &str) -> Vec<u8> {
    let styles: String = (1..=3)
        .map(|n| {
            format!(r#"<w:style w:type="paragraph" w:styleId="Heading{n}"><w:name w:val="heading {n}"/></w:style>"#)
        })
        .collect();
    let parts = [
        ("[Content_Types].xml", CONTENT_TYPES.to_string()),
        (
            "word/document.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><w:document {W}><w:body>{body}</w:body></w:document>"#
            ),
        ),
        (
            "word/styles.xml",
            format!("<w:styles {W}>{styles}</w:styles>"),
        ),
        (
            "word/header1.xml",
            format!("<w:hdr {W}>{}</w:hdr>", w_paragraph(None, header)),
        ),
        // Every section repeats the header: it is read once.
        (
            "word/header2.xml",
            format!("<w:hdr {W}>{}</w:hdr>", w_paragraph(None, header)),
        ),
        (
            "word/footnotes.xml",
            format!(
                r#"<w:footnotes {W}><w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote><w:footnote w:id="1">{}</w:footnote></w:footnotes>"#,
                w_paragraph(None, footnote)
            ),
        ),
    ];
    let mut files: Vec<(&str, Vec<u8>)> = parts
        .into_iter()
        .map(|(name, xml)| (name, xml.into_bytes()))
        .collect();
    // A chart's data, as Word keeps it: a workbook embedded, never read.
    let chart = zip_of(&[("xl/workbook.xml", "<workbook/>")]);
    files.push(("word/embeddings/Microsoft_Excel_Worksheet.xlsx", chart));
    zip_of(&files)
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#;

const P: &str = r#"xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships""#;

/// A slide: a title placeholder and body text frames.
pub struct Slide<'a> {
    pub title: &'a str,
    pub body: &'a [&'a str],
    pub notes: Option<&'a str>,
}

fn shape(placeholder: &str, paragraphs: &[&str]) -> String {
    let paragraphs: String = paragraphs
        .iter()
        .map(|p| format!("<a:p><a:r><a:t>{p}</a:t></a:r></a:p>"))
        .collect();
    format!(
        r#"<p:sp><p:nvSpPr><p:nvPr><p:ph type="{placeholder}"/></p:nvPr></p:nvSpPr><p:txBody>{paragraphs}</p:txBody></p:sp>"#
    )
}

/// A `.pptx` of `slides`, listed in the presentation in reverse file
/// order (slide files are numbered by creation, not by position).
pub fn pptx(slides: &[Slide]) -> Vec<u8> {
    let count = slides.len();
    let mut files = vec![("[Content_Types].xml".to_string(), CONTENT_TYPES.to_string())];
    let mut ids = String::new();
    let mut rels = String::new();
    for (i, slide) in slides.iter().enumerate() {
        // The i-th slide shown is stored as slide file count - i.
        let file = count - i;
        ids.push_str(&format!(r#"<p:sldId id="{}" r:id="rId{file}"/>"#, 256 + i));
        rels.push_str(&format!(
            r#"<Relationship Id="rId{file}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide" Target="slides/slide{file}.xml"/>"#
        ));
        let body = format!(
            "<p:sld {P}><p:cSld><p:spTree>{}{}</p:spTree></p:cSld></p:sld>",
            shape("title", &[slide.title]),
            shape("body", slide.body)
        );
        files.push((format!("ppt/slides/slide{file}.xml"), body));
        if let Some(notes) = slide.notes {
            files.push((
                format!("ppt/slides/_rels/slide{file}.xml.rels"),
                format!(
                    r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/notesSlide" Target="../notesSlides/notesSlide{file}.xml"/></Relationships>"#
                ),
            ));
            files.push((
                format!("ppt/notesSlides/notesSlide{file}.xml"),
                format!(
                    "<p:notes {P}><p:cSld><p:spTree>{}{}</p:spTree></p:cSld></p:notes>",
                    shape("sldImg", &[]),
                    shape("body", &[notes])
                ),
            ));
        }
    }
    files.push((
        "ppt/presentation.xml".into(),
        format!("<p:presentation {P}><p:sldIdLst>{ids}</p:sldIdLst></p:presentation>"),
    ));
    files.push((
        "ppt/_rels/presentation.xml.rels".into(),
        format!(
            r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>"#
        ),
    ));
    zip_of(&files)
}

/// An `.xlsx` of `sheets` (name, rows of cells; inline strings).
pub fn xlsx(sheets: &[(&str, &[&[&str]])]) -> Vec<u8> {
    const S: &str = r#"xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships""#;
    let mut entries = String::new();
    let mut rels = String::new();
    let mut files = vec![(
        "[Content_Types].xml".to_string(),
        r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#.to_string(),
    )];
    for (i, (name, rows)) in sheets.iter().enumerate() {
        let n = i + 1;
        entries.push_str(&format!(
            r#"<sheet name="{name}" sheetId="{n}" r:id="rId{n}"/>"#
        ));
        rels.push_str(&format!(
            r#"<Relationship Id="rId{n}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{n}.xml"/>"#
        ));
        let rows: String = rows
            .iter()
            .enumerate()
            .map(|(r, cells)| {
                let cells: String = cells
                    .iter()
                    .enumerate()
                    .map(|(c, v)| {
                        let column = (b'A' + c as u8) as char;
                        format!(
                            r#"<c r="{column}{}" t="inlineStr"><is><t>{v}</t></is></c>"#,
                            r + 1
                        )
                    })
                    .collect();
                format!(r#"<row r="{}">{cells}</row>"#, r + 1)
            })
            .collect();
        files.push((
            format!("xl/worksheets/sheet{n}.xml"),
            format!("<worksheet {S}><sheetData>{rows}</sheetData></worksheet>"),
        ));
    }
    files.push((
        "xl/workbook.xml".into(),
        format!("<workbook {S}><sheets>{entries}</sheets></workbook>"),
    ));
    files.push((
        "xl/_rels/workbook.xml.rels".into(),
        format!(
            r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>"#
        ),
    ));
    files.push((
        "_rels/.rels".into(),
        r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.into(),
    ));
    zip_of(&files)
}

/// An `.epub` of `chapters` (title, paragraph), in that reading order,
/// stored under file names in the opposite order; with `drm`, its first
/// chapter is listed as AES-encrypted, as a DRM'd book's are.
pub fn epub(chapters: &[(&str, &str)], drm: bool) -> Vec<u8> {
    let count = chapters.len();
    let mut files = vec![
        ("mimetype".to_string(), "application/epub+zip".to_string()),
        (
            "META-INF/container.xml".into(),
            r#"<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" version="1.0"><rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>"#.into(),
        ),
    ];
    let (mut manifest, mut spine) = (String::new(), String::new());
    for (i, (title, text)) in chapters.iter().enumerate() {
        let file = count - i;
        manifest.push_str(&format!(
            r#"<item id="c{file}" href="text/chapter%20{file}.xhtml" media-type="application/xhtml+xml"/>"#
        ));
        spine.push_str(&format!(r#"<itemref idref="c{file}"/>"#));
        files.push((
            format!("OEBPS/text/chapter {file}.xhtml"),
            format!(
                r#"<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title><style>p {{ color: red }}</style></head><body><h1>{title}</h1><p>{text}</p></body></html>"#
            ),
        ));
    }
    files.push((
        "OEBPS/content.opf".into(),
        format!(
            r#"<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><manifest>{manifest}</manifest><spine>{spine}</spine></package>"#
        ),
    ));
    if drm {
        files.push((
            "META-INF/encryption.xml".into(),
            format!(
                r#"<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/><enc:CipherData><enc:CipherReference URI="OEBPS/text/chapter%20{count}.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>"#
            ),
        ));
    }
    zip_of(&files)
}

//! ZIP containers (Office Open XML, OpenDocument, EPUB), opened within
//! limits: how many files they hold and how many bytes they unpack to,
//! counted as they unpack (the sizes a ZIP declares are the attacker's to
//! write), with archives inside refused and encryption named.

use super::{OutputBounds, unreadable};
use docpipe_core::error::Rejection;
use std::io::{Cursor, Read};
use zip::ZipArchive;

/// An encrypted Office file is not a ZIP but an OLE compound file (the
/// encrypted package inside); so is a legacy `.doc`/`.xls`.
const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Names of files that are archives themselves.
const ARCHIVE_EXTENSIONS: [&str; 12] = [
    "zip", "jar", "7z", "rar", "gz", "tgz", "bz2", "xz", "docx", "xlsx", "pptx", "epub",
];

/// Office keeps the workbook behind each chart, and any Office document
/// embedded in another, under `…/embeddings/`. They are never opened here
/// (the bytes a reader unpacks still count), so they are not refused.
fn embedded_office_document(name: &str, extension: &str) -> bool {
    name.contains("/embeddings/") && matches!(extension, "docx" | "xlsx" | "pptx")
}

pub struct Archive<'b> {
    zip: ZipArchive<Cursor<&'b [u8]>>,
    format: &'static str,
    /// Bytes unpacked so far, against `limit`.
    unpacked: u64,
    limit: u64,
}

impl<'b> Archive<'b> {
    /// Opens `bytes` as a `format` file (`docx`, `epub`…).
    pub fn open(
        bytes: &'b [u8],
        format: &'static str,
        bounds: &OutputBounds,
    ) -> Result<Archive<'b>, Rejection> {
        if bytes.starts_with(&OLE_MAGIC) {
            return Err(Rejection::EncryptedDocument);
        }
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| unreadable(format, e))?;
        if zip.len() > bounds.max_entries {
            return Err(Rejection::TooManyEntries {
                entries: zip.len(),
                limit: bounds.max_entries,
            });
        }
        for name in zip.file_names().flatten() {
            let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if extension.is_some_and(|e| {
                ARCHIVE_EXTENSIONS.contains(&e.as_str()) && !embedded_office_document(&name, &e)
            }) {
                return Err(Rejection::NestedArchive {
                    name: name.chars().take(200).collect(),
                });
            }
        }
        Ok(Archive {
            zip,
            format,
            unpacked: 0,
            limit: bounds.max_unpacked_bytes,
        })
    }

    /// The file `name` in the archive, if there is one; its bytes count
    /// against the archive's unpacked limit.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, Rejection> {
        let format = self.format;
        let mut file = match self.zip.by_name(name) {
            Ok(file) => file,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(unreadable(format, e)),
        };
        if file.encrypted() {
            return Err(Rejection::EncryptedDocument);
        }
        let mut bytes = Vec::new();
        let (unpacked, limit) = (&mut self.unpacked, self.limit);
        unpack(&mut file, &mut bytes, unpacked, limit, format)?;
        Ok(Some(bytes))
    }

    /// The file `name`, which the format requires, as text.
    pub fn require(&mut self, name: &str) -> Result<String, Rejection> {
        let format = self.format;
        self.read_text(name)?
            .ok_or_else(|| unreadable(format, format!("{name} is missing")))
    }

    /// The file `name` as text (XML parts are UTF-8), if there is one.
    pub fn read_text(&mut self, name: &str) -> Result<Option<String>, Rejection> {
        let format = self.format;
        self.read(name)?
            .map(|bytes| String::from_utf8(bytes).map_err(|e| unreadable(format, e)))
            .transpose()
    }

    /// Unpacks every file once, counting its bytes: for a reader (calamine)
    /// that unpacks the archive itself, which is then known to be in bounds.
    pub fn check_unpacked(&mut self) -> Result<(), Rejection> {
        for index in 0..self.zip.len() {
            let format = self.format;
            let mut file = self
                .zip
                .by_index(index)
                .map_err(|e| unreadable(format, e))?;
            if file.encrypted() {
                return Err(Rejection::EncryptedDocument);
            }
            let (unpacked, limit) = (&mut self.unpacked, self.limit);
            unpack(&mut file, &mut std::io::sink(), unpacked, limit, format)?;
        }
        Ok(())
    }

    /// The names of the archive's files, in the order it stores them.
    pub fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .flatten()
            .map(|name| name.into_owned())
            .collect()
    }
}

/// Copies `file` to `out`, adding its bytes to `unpacked`, up to `limit`.
fn unpack(
    file: &mut impl Read,
    out: &mut impl std::io::Write,
    unpacked: &mut u64,
    limit: u64,
    format: &str,
) -> Result<(), Rejection> {
    let room = limit.saturating_sub(*unpacked);
    let read = std::io::copy(&mut file.take(room + 1), out).map_err(|e| unreadable(format, e))?;
    *unpacked += read;
    if read > room {
        return Err(Rejection::UnpacksTooLarge {
            limit_mb: limit >> 20,
        });
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use docpipe_core::domain::format::Format;
    use docpipe_core::settings::ParseLimits;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    /// A ZIP of `files`, deflated.
    pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in files {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn bounds() -> OutputBounds {
        ParseLimits::default().bounds(Format::Text, 0)
    }

    #[test]
    fn a_bomb_is_stopped_at_the_limit_not_at_its_declared_size() {
        let zeros = vec![0u8; 3 << 20];
        let bomb = zip_of(&[("a.xml", &zeros[..1 << 20]), ("word/document.xml", &zeros)]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let bounds = OutputBounds {
            max_unpacked_bytes: 2 << 20,
            ..bounds()
        };
        let mut archive = Archive::open(&bomb, "docx", &bounds).unwrap();
        assert_eq!(archive.read("a.xml").unwrap().unwrap().len(), 1 << 20);
        // The second file passes the limit only with the first one's bytes.
        assert_eq!(
            archive.read("word/document.xml"),
            Err(Rejection::UnpacksTooLarge { limit_mb: 2 })
        );
    }

    #[test]
    fn many_files_nested_archives_and_encryption_are_refused() {
        let names: Vec<String> = (0..10_001).map(|i| format!("f{i}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        assert!(matches!(
            Archive::open(&zip_of(&files), "docx", &bounds()).err(),
            Some(Rejection::TooManyEntries {
                entries: 10_001,
                ..
            })
        ));
        let chart = zip_of(&[("word/embeddings/Microsoft_Excel_Worksheet.xlsx", b"PK")]);
        assert!(Archive::open(&chart, "docx", &bounds()).is_ok());
        let nested = zip_of(&[("word/embeddings/inner.ZIP", b"PK")]);
        assert!(matches!(
            Archive::open(&nested, "docx", &bounds()).err(),
            Some(Rejection::NestedArchive { name }) if name == "word/embeddings/inner.ZIP"
        ));
        let mut ole = OLE_MAGIC.to_vec();
        ole.extend_from_slice(&[0; 512]);
        assert_eq!(
            Archive::open(&ole, "xlsx", &bounds()).err(),
            Some(Rejection::EncryptedDocument)
        );
        assert!(matches!(
            Archive::open(b"not a zip", "docx", &bounds()).err(),
            Some(Rejection::UnreadableDocument { .. })
        ));
    }
}

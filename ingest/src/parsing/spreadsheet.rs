//! Workbooks (`.xlsx`, `.xls`, `.ods`, read by calamine): each sheet a
//! page, its name a heading, its rows a table (header repeated per block).

use super::archive::Archive;
use super::layout::{Layout, TextBuilder};
use super::{Format, OutputBounds, table, unreadable};
use calamine::{Data, Ods, Reader, Xls, Xlsx};
use docpipe_core::error::Rejection;
use std::io::Cursor;

pub fn parse(
    bytes: &[u8],
    format: Format,
    bounds: &OutputBounds,
) -> Result<(String, Layout), Rejection> {
    let name = format.name();
    let cursor = Cursor::new(bytes);
    match format {
        Format::Xls => {
            let workbook = Xls::new(cursor).map_err(|e| match e {
                calamine::XlsError::Password => Rejection::EncryptedDocument,
                e => unreadable(name, e),
            })?;
            write_sheets(workbook, name, bounds)
        }
        Format::Ods => {
            Archive::open(bytes, name, bounds)?.check_unpacked()?;
            let workbook = Ods::new(cursor).map_err(|e| match e {
                calamine::OdsError::Password => Rejection::EncryptedDocument,
                e => unreadable(name, e),
            })?;
            write_sheets(workbook, name, bounds)
        }
        _ => {
            Archive::open(bytes, name, bounds)?.check_unpacked()?;
            let workbook: Xlsx<_> = Xlsx::new(cursor).map_err(|e| unreadable(name, e))?;
            write_sheets(workbook, name, bounds)
        }
    }
}

fn write_sheets<RS, R>(
    mut workbook: R,
    name: &str,
    bounds: &OutputBounds,
) -> Result<(String, Layout), Rejection>
where
    RS: std::io::Read + std::io::Seek,
    R: Reader<RS>,
    R::Error: std::fmt::Display,
{
    let sheets = workbook.sheet_names();
    bounds.check_pages(sheets.len())?;
    let mut doc = TextBuilder::new(bounds.max_chars);
    for (number, sheet) in (1..).zip(&sheets) {
        let range = workbook
            .worksheet_range(sheet)
            .map_err(|e| unreadable(name, e))?;
        doc.page(number);
        doc.heading(1, sheet)?;
        // Rows keep the sheet's numbers (a range may start below row 1).
        let first_row = range.start().map_or(1, |(row, _)| row + 1);
        let rows = range
            .rows()
            .map(|row| Ok(row.iter().map(Data::to_string).collect()));
        table::write(&mut doc, first_row, rows)?;
    }
    Ok(doc.finish())
}

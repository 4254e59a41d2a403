//! The paging plan of one window: time slices, each paged on its own, and when a slice is done.
//!
//! Page 1 covers the whole window. When its total shows much more to read, the rest of the window
//! is split into slices paged concurrently ([`split`]); pages are still written strictly in time
//! order (the head slice first), so the checkpoint's meaning is unchanged.

use crate::settings::{Paging, Settings};
use std::collections::VecDeque;

/// A checked reply to a query, with what paging needs read out of it.
pub struct FetchedPage {
    pub page: ReadPage,
    pub count: usize,
    pub cursor: Option<String>,
    pub total: Option<u64>,
    pub last_entry_ts: Option<i64>,
}

/// A reply's text and where each entry lies in it: found when the reply is checked, so that
/// writing the page does not parse it again.
pub struct ReadPage {
    pub text: String,
    pub entries: Vec<std::ops::Range<usize>>,
}

impl ReadPage {
    /// Its entries' raw JSON, in order.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|range| self.text.get(range.clone()))
    }
}

/// Checks a reply (a garbled one is retried) and reads what paging needs out of it, parsing it
/// once: the check keeps each entry's place.
pub fn read_page(body: &[u8]) -> Result<FetchedPage, String> {
    let text = std::str::from_utf8(body).map_err(|_| "reply is not UTF-8".to_string())?;
    let page = crate::entry::parse_page_text(text)?;
    let base = text.as_ptr() as usize;
    let entries = page
        .data
        .iter()
        .map(|r| {
            let start = r.get().as_ptr() as usize - base;
            start..start + r.get().len()
        })
        .collect();
    let text = text.to_owned();
    Ok(FetchedPage {
        count: page.data.len(),
        cursor: page.cursor,
        total: page.total,
        last_entry_ts: page.data.iter().rev().find_map(|r| crate::entry::meta(r.get()).timestamp_ms),
        page: ReadPage { text, entries },
    })
}

/// One time slice `[from_ms, to_ms]` of a window, paged on its own.
pub struct Slice {
    pub from_ms: i64,
    pub to_ms: i64,
    pub cursor: Option<String>,
    pub offset: u64,
    pub done: bool,
    /// Pages read but not yet written.
    pub pages: VecDeque<ReadPage>,
    /// Hashes of the cursors this slice was given: one given twice is a loop.
    cursors: std::collections::HashSet<u128>,
}

impl Slice {
    pub fn new(from_ms: i64, to_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms,
            cursor: None,
            offset: 0,
            done: false,
            pages: VecDeque::new(),
            cursors: std::collections::HashSet::new(),
        }
    }

    /// Moves past a page of `count` entries. A slice ends only on a signal that cannot mean
    /// anything else: an empty page, or no cursor. A short page proves nothing (an API may cap
    /// pages below the limit asked for), and neither does a total (it may be capped or an
    /// estimate): stopping on either would skip the rest of the window. A cursor given a second
    /// time is an API paging in a loop: refused at once, rather than read until the pass's time
    /// runs out with every organization after it waiting.
    pub fn advance(&mut self, paging: Paging, count: usize, cursor: Option<String>) -> Result<(), String> {
        match paging {
            Paging::Cursor => match cursor {
                Some(next) if count > 0 => {
                    if !self.cursors.insert(crate::entry::fnv1a_128(next.as_bytes())) {
                        return Err(format!(
                            "the API gave the same cursor twice while paging {}..{}: it pages in a loop, so the window cannot be read to its end",
                            crate::window::rfc3339_ms(self.from_ms),
                            crate::window::rfc3339_ms(self.to_ms)
                        ));
                    }
                    self.cursor = Some(next);
                }
                _ => self.done = true,
            },
            Paging::Offset => {
                self.offset += count as u64;
                self.done = count == 0;
            }
        }
        Ok(())
    }
}

/// `[from, to]` cut into `parts` consecutive closed slices (fewer if it is too short).
pub fn split(from_ms: i64, to_ms: i64, parts: i64) -> Vec<Slice> {
    let span = to_ms - from_ms + 1;
    let parts = parts.clamp(1, span.max(1));
    (0..parts)
        .map(|k| {
            let start = from_ms + span * k / parts;
            let end = if k == parts - 1 { to_ms } else { from_ms + span * (k + 1) / parts - 1 };
            Slice::new(start, end)
        })
        .collect()
}

/// The query for a slice's next page.
pub fn page_request(settings: &Settings, org: &str, slice: &Slice, with_total: bool) -> (String, Vec<u8>) {
    let mut body = serde_json::json!({
        "startDate": slice.from_ms,
        "endDate": slice.to_ms,
        "limit": settings.page_size,
        "ascending": true,
    });
    let total = if with_total { "&doIncludeTotal=true" } else { "" };
    let path = match settings.paging {
        Paging::Cursor => {
            if let Some(c) = &slice.cursor {
                body["cursor"] = serde_json::Value::String(c.clone());
            }
            format!("/audit/v2/organizations/{org}/query?cursorPagination=true{total}")
        }
        Paging::Offset => {
            body["offset"] = serde_json::Value::from(slice.offset);
            format!("/audit/v2/organizations/{org}/query")
        }
    };
    (path, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_window_without_gaps_or_overlaps() {
        let slices = split(100, 199, 4);
        assert_eq!(slices.len(), 4);
        assert_eq!((slices[0].from_ms, slices[3].to_ms), (100, 199));
        for pair in slices.windows(2) {
            assert_eq!(pair[0].to_ms + 1, pair[1].from_ms);
        }
        assert_eq!(split(5, 6, 10).len(), 2, "no more slices than milliseconds");
    }

    #[test]
    fn offset_paging_ends_on_an_empty_page_never_on_a_short_page() {
        let mut slice = Slice::new(0, 10);
        slice.advance(Paging::Offset, 50, None).unwrap();
        assert!(!slice.done, "a short page (capped below the limit) is not the end");
        slice.advance(Paging::Offset, 0, None).unwrap();
        assert!(slice.done);
    }

    #[test]
    fn cursor_paging_ends_without_a_cursor_or_entries() {
        let mut slice = Slice::new(0, 10);
        slice.advance(Paging::Cursor, 3, Some("c".into())).unwrap();
        assert!(!slice.done && slice.cursor.as_deref() == Some("c"));
        slice.advance(Paging::Cursor, 0, Some("d".into())).unwrap();
        assert!(slice.done);
    }
}

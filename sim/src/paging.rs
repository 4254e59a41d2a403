//! One page of an org's audit log, as the query endpoint serves it: inclusive bounds, oldest first
//! unless asked otherwise, offset or keyset-cursor paging. Apart from the server so that the
//! paging rules are tested on their own.

use crate::data::Entry;

/// How a query asks for its page.
pub(crate) enum Paging {
    /// Skip this many matching entries.
    Offset(usize),
    /// A keyset cursor: the (timestamp, id) of the last entry served, or none to start at the
    /// first.
    Cursor(Option<(i64, String)>),
}

/// The query's terms, already validated (`limit` in 1..=200).
pub(crate) struct PageRequest {
    /// Inclusive.
    pub(crate) from: i64,
    /// Inclusive.
    pub(crate) to: i64,
    pub(crate) limit: usize,
    pub(crate) ascending: bool,
    pub(crate) paging: Paging,
}

pub(crate) struct Page<'a> {
    pub(crate) entries: Vec<&'a Entry>,
    /// Cursor paging only: the cursor after this page, none when the page is empty.
    pub(crate) cursor: Option<String>,
    /// Every entry that matches the bounds, whatever the page.
    pub(crate) total: usize,
}

/// The `ts:id` form `one_page` hands cursors out in; anything else is no cursor.
pub(crate) fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (ts, id) = c.split_once(':')?;
    Some((ts.parse::<i64>().ok()?, id.to_string()))
}

/// The page of `entries` (one org's, sorted by (ts, sort_id)) that `request` asks for, among
/// those `visible` lets through.
pub(crate) fn one_page<'a>(entries: &'a [Entry], request: &PageRequest, visible: impl Fn(&Entry) -> bool) -> Page<'a> {
    let ascending = request.ascending;
    let limit = request.limit;
    let mut matching: Vec<&Entry> =
        entries.iter().filter(|&e| e.ts >= request.from && e.ts <= request.to && visible(e)).collect();
    if !ascending {
        matching.reverse();
    }
    match &request.paging {
        Paging::Cursor(after) => {
            let rest: Vec<&Entry> = match after {
                None => matching.clone(),
                Some((ts, id)) => matching
                    .iter()
                    .copied()
                    .filter(|e| if ascending { (e.ts, &e.sort_id) > (*ts, id) } else { (e.ts, &e.sort_id) < (*ts, id) })
                    .collect(),
            };
            let page: Vec<&Entry> = rest.into_iter().take(limit).collect();
            let cursor = page.last().map(|e| format!("{}:{}", e.ts, e.sort_id));
            Page { entries: page, cursor, total: matching.len() }
        }
        Paging::Offset(offset) => {
            let page: Vec<&Entry> = matching.iter().skip(*offset).take(limit).copied().collect();
            Page { entries: page, cursor: None, total: matching.len() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: i64, id: &str) -> Entry {
        Entry { ts, sort_id: id.to_string(), has_id: true, raw: format!("{ts}:{id}"), late: false }
    }

    /// Sorted as an org's entries are; two share a millisecond.
    fn org() -> Vec<Entry> {
        vec![entry(10, "a"), entry(20, "a"), entry(20, "b"), entry(30, "a"), entry(40, "a")]
    }

    fn request(from: i64, to: i64, limit: usize, paging: Paging) -> PageRequest {
        PageRequest { from, to, limit, ascending: true, paging }
    }

    fn served<'a>(p: &Page<'a>) -> Vec<&'a str> {
        p.entries.iter().map(|&e| e.raw.as_str()).collect()
    }

    fn all(_: &Entry) -> bool {
        true
    }

    #[test]
    fn offset_pages_follow_one_another_and_end_on_an_empty_page() {
        let org = org();
        let pages: Vec<Page> =
            [0, 2, 4, 6].into_iter().map(|o| one_page(&org, &request(0, 100, 2, Paging::Offset(o)), all)).collect();
        assert_eq!(served(&pages[0]), ["10:a", "20:a"]);
        assert_eq!(served(&pages[1]), ["20:b", "30:a"]);
        assert_eq!(served(&pages[2]), ["40:a"]);
        assert!(pages[3].entries.is_empty());
        for p in &pages {
            assert_eq!((p.total, &p.cursor), (5, &None), "offset paging counts every match and has no cursor");
        }
    }

    #[test]
    fn cursor_pages_resume_after_the_last_entry_served_even_within_a_millisecond() {
        let org = org();
        let mut cursor: Option<String> = None;
        let mut pages = Vec::new();
        loop {
            let p = one_page(&org, &request(0, 100, 2, Paging::Cursor(cursor.as_deref().and_then(parse_cursor))), all);
            assert_eq!(p.total, 5);
            pages.push(served(&p).join(" "));
            match p.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(pages, ["10:a 20:a", "20:b 30:a", "40:a", ""], "an empty page without a cursor ends it");
    }

    #[test]
    fn a_cursor_page_names_its_last_entry() {
        let org = org();
        let p = one_page(&org, &request(0, 100, 3, Paging::Cursor(None)), all);
        assert_eq!(p.cursor.as_deref(), Some("20:b"));
        assert_eq!(parse_cursor("20:b"), Some((20, "b".to_string())));
        assert_eq!(parse_cursor("not a cursor"), None, "starts at the first entry");
    }

    #[test]
    fn newest_first_pages_walk_backwards() {
        let org = org();
        let mut newest_first = request(0, 100, 2, Paging::Cursor(None));
        newest_first.ascending = false;
        let first = one_page(&org, &newest_first, all);
        assert_eq!(served(&first), ["40:a", "30:a"]);
        newest_first.paging = Paging::Cursor(first.cursor.as_deref().and_then(parse_cursor));
        assert_eq!(served(&one_page(&org, &newest_first, all)), ["20:b", "20:a"]);
        newest_first.paging = Paging::Offset(4);
        assert_eq!(served(&one_page(&org, &newest_first, all)), ["10:a"]);
    }

    #[test]
    fn both_bounds_are_inclusive() {
        let org = org();
        let p = one_page(&org, &request(20, 30, 200, Paging::Offset(0)), all);
        assert_eq!(served(&p), ["20:a", "20:b", "30:a"]);
        assert_eq!(p.total, 3, "the total counts only what is within the bounds");
        assert!(one_page(&org, &request(31, 39, 200, Paging::Offset(0)), all).entries.is_empty());
    }

    #[test]
    fn the_limit_caps_a_page_not_the_total() {
        let org = org();
        for paging in [Paging::Offset(0), Paging::Cursor(None)] {
            let p = one_page(&org, &request(0, 100, 1, paging), all);
            assert_eq!((served(&p), p.total), (vec!["10:a"], 5));
        }
    }

    #[test]
    fn what_is_not_visible_is_neither_served_nor_counted() {
        let mut org = org();
        org[1].late = true;
        let p = one_page(&org, &request(0, 100, 200, Paging::Offset(0)), |e| !e.late);
        assert_eq!(served(&p), ["10:a", "20:b", "30:a", "40:a"]);
        assert_eq!(p.total, 4);
    }
}

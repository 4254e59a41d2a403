//! The client secret on the wire and out of every message: its form encoding, and scrubbing it
//! (in every encoding it may come back in) from text that leaves the engine.

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Removes the secret from text that leaves the engine: the engine never writes it into a
/// message, but a reply body it quotes could hold it, as sent (form-encoded), percent-encoded or
/// JSON-escaped as well as raw.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.len() < 4 {
        return text.to_string();
    }
    let form = form_encode(secret);
    let json = serde_json::to_string(secret).unwrap_or_default();
    let forms = [secret.to_string(), form.clone(), form.replace('+', "%20"), json.trim_matches('"').to_string()];
    let mut text = text.to_string();
    for form in forms.iter().filter(|f| f.len() >= 4) {
        text = text.replace(form.as_str(), "<redacted>");
        // Percent-encodings may come back in lower case.
        if form.contains('%') {
            text = replace_ignoring_case(&text, form, "<redacted>");
        }
    }
    text
}

/// `text` with every ASCII-case-insensitive occurrence of `from` replaced.
fn replace_ignoring_case(text: &str, from: &str, to: &str) -> String {
    let (lower, needle) = (text.to_ascii_lowercase(), from.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(&needle) {
        out.push_str(&text[at..at + found]);
        out.push_str(to);
        at += found + needle.len();
    }
    out.push_str(&text[at..]);
    out
}

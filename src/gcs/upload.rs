//! Uploads with preconditions: `ifGenerationMatch=0` creates only, `ifGenerationMatch=N` swaps
//! generation N. Small objects go in one multipart request; large ones, where the target allows
//! ([`Target::resumable_above`](super::Target)), in a resumable session whose progress is asked
//! for after any failed chunk, and which starts over when the session itself has expired.

use super::wire::{Upload, crc32c_b64, multipart_body, persisted, upload_reply, written_before};
use super::{Failure, Gcs, REPLY_BYTES, Reply};
use crate::platform::{Method, Platform, Request, StoreError};
use crate::settings::BaseUrl;

/// Resumable sessions tried for one object before giving up (each expired with 404 or 410).
const SESSIONS: u32 = 3;

impl<P: Platform> Gcs<P> {
    /// Uploads `data` under `name` if the object's generation is `if_generation` (0: absent); a
    /// 412 is `on_412`, unless the object holds exactly these bytes (a retried request whose first
    /// attempt went through).
    pub(super) fn upload(
        &mut self,
        name: &str,
        data: &[u8],
        content_type: &str,
        if_generation: u64,
        on_412: StoreError,
    ) -> Result<u64, StoreError> {
        let metadata = serde_json::json!({ "name": name, "contentType": content_type, "crc32c": crc32c_b64(data) });
        // Checkpoints (compare-and-swap on a generation) are small and always go in one request.
        let resumable =
            on_412 == StoreError::AlreadyExists && self.target.resumable_above.is_some_and(|above| data.len() > above);
        let reply = if resumable {
            self.resumable(&metadata, data, content_type, if_generation)?
        } else {
            let (boundary, body) = multipart_body(&metadata, content_type, data);
            let path = format!(
                "/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={if_generation}",
                self.target.bucket
            );
            let headers = vec![("content-type".into(), format!("multipart/related; boundary={boundary}"))];
            let request = Request { method: Method::Post, path, headers, body, reply_limit: REPLY_BYTES };
            self.send("uploading object", request)?
        };
        match upload_reply(name, reply.status, &reply.body, data)? {
            Upload::Written(generation) => Ok(generation),
            Upload::Precondition => written_before(self.metadata(name)?.as_ref(), data, on_412),
            Upload::Refused => Err(self.refusal("uploading object", reply.status, &reply.body)),
        }
    }

    /// A resumable upload: a session, then its chunks; a new session when one expires.
    fn resumable(
        &mut self,
        metadata: &serde_json::Value,
        data: &[u8],
        content_type: &str,
        if_generation: u64,
    ) -> Result<Reply, StoreError> {
        let path = format!(
            "/upload/storage/v1/b/{}/o?uploadType=resumable&ifGenerationMatch={if_generation}",
            self.target.bucket
        );
        let start = Request {
            method: Method::Post,
            path,
            headers: vec![
                ("content-type".into(), "application/json; charset=UTF-8".into()),
                ("x-upload-content-type".into(), content_type.into()),
                ("x-upload-content-length".into(), data.len().to_string()),
            ],
            body: metadata.to_string().into_bytes(),
            reply_limit: REPLY_BYTES,
        };
        for _ in 0..SESSIONS {
            let started = self.send("starting a resumable upload", start.clone())?;
            if !matches!(started.status, 200 | 201) {
                return Ok(started);
            }
            // Credentials go to the session's host: by the rule for every endpoint that carries
            // them (an emulator's requests carry none).
            let anonymous = self.target.tokens == super::TokenSource::Anonymous;
            let (base, session) = started
                .header("location")
                .and_then(|url| session_url(url, anonymous))
                .ok_or_else(|| StoreError::Other("resumable upload: no usable session URL".into()))?;
            match self.fill(&base, &session, data)? {
                Some(reply) => return Ok(reply),
                // The session expired: start over (no URL in the message: it is a credential).
                None => self.platform.note("a resumable upload session expired (HTTP 404/410); starting another"),
            }
        }
        Err(StoreError::Unavailable(format!("resumable upload sessions expired {SESSIONS} times in a row")))
    }

    /// Sends `data` into a session until it answers with the object. `None`: the session is gone
    /// (404 or 410) and the upload must start over. Every reply either moves the upload forward
    /// or counts as a setback, and setbacks are bounded by the attempts, so this ends.
    fn fill(&mut self, base: &BaseUrl, session: &str, data: &[u8]) -> Result<Option<Reply>, StoreError> {
        let total = data.len();
        let ask = Request {
            method: Method::Put,
            path: session.to_string(),
            headers: vec![("content-range".into(), format!("bytes */{total}"))],
            body: Vec::new(),
            reply_limit: REPLY_BYTES,
        };
        const ASKING: &str = "asking a resumable upload's progress";
        let mut offset = 0usize;
        let mut setbacks = 0u32;
        loop {
            let reply = if offset < total {
                let end = (offset + self.target.chunk).min(total);
                let put = Request {
                    method: Method::Put,
                    path: session.to_string(),
                    headers: vec![("content-range".into(), format!("bytes {offset}-{}/{total}", end - 1))],
                    body: data[offset..end].to_vec(),
                    reply_limit: REPLY_BYTES,
                };
                match self.attempt(base, "uploading a chunk", &put) {
                    Ok(reply) if reply.status == 401 => {
                        setbacks = self.setback(setbacks, "HTTP 401")?;
                        self.renew("uploading a chunk")?;
                        self.send_to(base, ASKING, ask.clone())?
                    }
                    Ok(reply) => reply,
                    Err(Failure::Final(e)) => return Err(e),
                    Err(Failure::Transient(problem)) => {
                        setbacks = self.setback(setbacks, &problem)?;
                        self.platform.note(&format!("{problem}; asking the session what it kept"));
                        self.pause(setbacks);
                        // Part of the chunk may have arrived: ask before sending again.
                        self.send_to(base, ASKING, ask.clone())?
                    }
                }
            } else {
                self.send_to(base, ASKING, ask.clone())?
            };
            match reply.status {
                308 => {
                    let range = reply.header("range");
                    let held = persisted(range)
                        .filter(|held| *held <= total)
                        .ok_or_else(|| StoreError::Other(format!("resumable upload: unreadable Range {range:?}")))?;
                    if held <= offset {
                        setbacks = self.setback(setbacks, "the session kept nothing new")?;
                    }
                    offset = held;
                }
                404 | 410 => return Ok(None),
                _ => return Ok(Some(reply)),
            }
        }
    }

    /// One more setback of a session, or `unavailable` when they reach the attempts.
    fn setback(&self, setbacks: u32, problem: &str) -> Result<u32, StoreError> {
        let setbacks = setbacks + 1;
        if setbacks >= self.target.attempts {
            return Err(StoreError::Unavailable(format!("resumable upload: {problem} ({setbacks} setbacks)")));
        }
        Ok(setbacks)
    }
}

/// A session URL (`Location`) as where to send and what: `scheme://authority` and the path with
/// its query.
fn session_url(url: &str, anonymous: bool) -> Option<(BaseUrl, String)> {
    let after_scheme = url.find("://")? + 3;
    let path_at = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    let origin = &url[..path_at];
    let base =
        if anonymous { BaseUrl::parse(origin) } else { BaseUrl::for_credentials(origin, "a session URL") }.ok()?;
    let path = if path_at == url.len() { "/".to_string() } else { url[path_at..].to_string() };
    Some((base, path))
}

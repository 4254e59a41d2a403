//! Uploads with preconditions: `ifGenerationMatch=0` creates only, `ifGenerationMatch=N` swaps
//! generation N. Small objects go in one multipart request; large ones in a resumable session
//! whose progress is asked for after any failed chunk, and which starts over when the session
//! itself has expired.

use super::request::{Upload, crc32c_b64, multipart_body, persisted, upload_reply, written_before};
use super::{Failure, GcsStore, Reply, StoreError};

/// New objects larger than this (compressed bytes) go up in a resumable upload instead of one
/// multipart request. Overridable (`MULESOFT_AUDIT_GCS_RESUMABLE_ABOVE`, bytes) for tests.
pub const RESUMABLE_THRESHOLD: usize = 16 << 20;
/// Resumable chunk size (a multiple of 256 KiB, as the API requires). Overridable
/// (`MULESOFT_AUDIT_GCS_CHUNK_KIB`) for tests.
pub const CHUNK: usize = 8 << 20;
/// Resumable sessions tried for one object before giving up (each expired with 404 or 410).
const SESSIONS: u32 = 3;

/// What to do when a create-like request answers 412.
pub enum OnPrecondition {
    AlreadyExists,
    Mismatch,
}

impl GcsStore {
    /// Uploads `data` under `name` if the object's generation is `if_generation` (0: absent).
    pub(super) async fn upload(
        &self,
        name: &str,
        data: &[u8],
        content_type: &str,
        if_generation: u64,
        on_412: OnPrecondition,
    ) -> Result<u64, StoreError> {
        let metadata = serde_json::json!({ "name": name, "contentType": content_type, "crc32c": crc32c_b64(data) });
        // Checkpoints (compare-and-swap on a generation) are small and always go in one request.
        let resumable = matches!(on_412, OnPrecondition::AlreadyExists) && data.len() > self.resumable_above;
        let reply = if resumable {
            self.resumable(&metadata, data, content_type, if_generation).await?
        } else {
            let (boundary, body) = multipart_body(&metadata, content_type, data);
            let url = format!(
                "{}/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={if_generation}",
                self.endpoint, self.bucket
            );
            self.send("uploading object", || {
                self.client
                    .post(&url)
                    .header("content-type", format!("multipart/related; boundary={boundary}"))
                    .body(body.clone())
            })
            .await?
        };
        match upload_reply(name, reply.status, &reply.body, data)? {
            Upload::Written(generation) => Ok(generation),
            Upload::Precondition => {
                let conflict = match on_412 {
                    OnPrecondition::AlreadyExists => StoreError::AlreadyExists,
                    OnPrecondition::Mismatch => StoreError::GenerationMismatch,
                };
                written_before(self.metadata(name).await?.as_ref(), data, conflict)
            }
            Upload::Refused => Err(self.final_error("uploading object", reply.status, &reply.body)),
        }
    }

    /// A resumable upload: a session, then its chunks; a new session when one expires.
    async fn resumable(
        &self,
        metadata: &serde_json::Value,
        data: &[u8],
        content_type: &str,
        if_generation: u64,
    ) -> Result<Reply, StoreError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&ifGenerationMatch={if_generation}",
            self.endpoint, self.bucket
        );
        let meta_text = metadata.to_string();
        for _ in 0..SESSIONS {
            let started = self
                .send("starting a resumable upload", || {
                    self.client
                        .post(&url)
                        .header("content-type", "application/json; charset=UTF-8")
                        .header("x-upload-content-type", content_type)
                        .header("x-upload-content-length", data.len().to_string())
                        .body(meta_text.clone())
                })
                .await?;
            if !matches!(started.status, 200 | 201) {
                return Ok(started);
            }
            let session = started
                .headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| StoreError::Other("resumable upload: no session URL".into()))?
                .to_string();
            match self.fill(&session, data).await? {
                Some(reply) => return Ok(reply),
                None => tracing::warn!("a resumable upload session expired (HTTP 404/410); starting another"),
            }
        }
        Err(StoreError::Unavailable(format!("resumable upload sessions expired {SESSIONS} times in a row")))
    }

    /// Sends `data` into a session until it answers with the object. `None`: the session is gone
    /// (404 or 410) and the upload must start over. Every reply either moves the upload forward
    /// or counts as a setback, and setbacks are bounded by the retry policy, so this ends.
    async fn fill(&self, session: &str, data: &[u8]) -> Result<Option<Reply>, StoreError> {
        let total = data.len();
        let ask = || self.client.put(session).header("content-range", format!("bytes */{total}"));
        let mut offset = 0usize;
        let mut setbacks = 0u32;
        let mut setback = |problem: &str| {
            setbacks += 1;
            if setbacks >= self.retry.attempts {
                Err(StoreError::Unavailable(format!("resumable upload: {problem} ({setbacks} setbacks)")))
            } else {
                Ok(setbacks)
            }
        };
        loop {
            let reply = if offset < total {
                let end = (offset + self.chunk).min(total);
                let range = format!("bytes {offset}-{}/{total}", end - 1);
                let chunk = data[offset..end].to_vec();
                let put = || self.client.put(session).header("content-range", range.clone()).body(chunk.clone());
                match self.attempt("uploading a chunk", &put).await {
                    Ok(reply) if reply.status == 401 => {
                        setback("HTTP 401")?;
                        self.renew_after_401("uploading a chunk")?;
                        self.send("asking a resumable upload's progress", ask).await?
                    }
                    Ok(reply) => reply,
                    Err(Failure::Final(e)) => return Err(e),
                    Err(Failure::Transient(problem)) => {
                        let n = setback(&problem)?;
                        tracing::warn!(%problem, "a chunk failed; asking the session what it kept");
                        tokio::time::sleep(self.retry.pause(n)).await;
                        // Part of the chunk may have arrived: ask before sending again.
                        self.send("asking a resumable upload's progress", ask).await?
                    }
                }
            } else {
                self.send("asking a resumable upload's progress", ask).await?
            };
            match reply.status {
                308 => {
                    let range = reply.headers.get("range").and_then(|v| v.to_str().ok());
                    let held = persisted(range)
                        .filter(|held| *held <= total)
                        .ok_or_else(|| StoreError::Other(format!("resumable upload: unreadable Range {range:?}")))?;
                    if held <= offset {
                        setback("the session kept nothing new")?;
                    }
                    offset = held;
                }
                404 | 410 => return Ok(None),
                _ => return Ok(Some(reply)),
            }
        }
    }
}

//! copy, branch, repair, snapshot, restore and export: the commands that move
//! whole namespaces (snapshot files are written through a temp file, fsync,
//! rename and directory fsync, and verified before use).

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn ns_copy(
    client: &Client,
    out: &Output,
    src: &str,
    dst: &str,
    deep: bool,
    generation: Option<u64>,
) -> Result<(), String> {
    check_namespace(src)?;
    check_namespace(dst)?;
    let body = json!({"source_namespace": src, "deep": deep, "generation": generation});
    let resp = client
        .send(reqwest::Method::POST, &format!("/v1/namespaces/{dst}/_admin/copy"), &[], Some(&body))
        .await?;
    if out.json {
        return out.json(&resp);
    }
    let how = if deep { "deep copy" } else { "copy-on-write copy" };
    emit(&format!(
        "{how} of {src} (version {}) created as {dst} (version {}): {} objects shared, {} copied\n",
        resp["source_version"], resp["version"], resp["objects_shared"], resp["objects_copied"]
    ))
}

pub(super) async fn ns_branch(
    client: &Client,
    out: &Output,
    src: &str,
    dst: &str,
    generation: Option<u64>,
) -> Result<(), String> {
    check_namespace(src)?;
    check_namespace(dst)?;
    let body = json!({"branch_from_namespace": {"source_namespace": src, "generation": generation}});
    let resp = client.send(reqwest::Method::POST, &format!("/v2/namespaces/{dst}"), &[], Some(&body)).await?;
    if out.json {
        return out.json(&resp);
    }
    emit(&format!("branch {dst} of {src} created (version {})\n", resp["version"]))
}

pub(super) async fn repair(
    client: &Client,
    out: &Output,
    sweep: bool,
    grace_secs: u64,
    retention_secs: Option<u64>,
) -> Result<(), String> {
    let body = json!({"sweep": sweep, "grace_secs": grace_secs, "manifest_retention_secs": retention_secs});
    let r = run_job(client, "/v1/_admin/repair", &body).await?;
    if out.json {
        return out.json(&r);
    }
    let n = |k: &str| r.get(k).map_or_else(|| "0".to_string(), ToString::to_string);
    let missing = r.get("missing_objects").and_then(Value::as_array).map_or(0, Vec::len);
    let mut text = format!(
        "namespaces: {}\nmanifests read: {}\nmanifests collected: {}\nrefcounts changed: {} ({} lowered, {} raised)\n",
        n("namespaces"),
        n("manifests_read"),
        n("manifests_collected"),
        n("refcounts_changed"),
        n("refcounts_lowered"),
        n("refcounts_raised"),
    );
    let _ = writeln!(text, "unreferenced objects kept (younger than {grace_secs}s): {}", n("kept_young"));
    if sweep {
        let _ = writeln!(text, "objects swept: {}", n("swept_count"));
        let _ = writeln!(text, "staging files removed (left by crashes): {}", n("staging_removed"));
    } else {
        text.push_str("(no sweep: pass --sweep to delete unreferenced objects)\n");
    }
    if missing > 0 {
        let _ = writeln!(text, "WARNING: {missing} referenced objects are missing from the store");
    }
    emit(&text)
}

pub(super) async fn verify(client: &Client, out: &Output) -> Result<(), String> {
    let r = run_job(client, "/v1/_admin/verify", &json!({})).await?;
    let damaged = r["damaged"].as_array().cloned().unwrap_or_default();
    if out.json {
        out.json(&r)?;
    } else {
        let mut text = format!(
            "namespaces: {}\nobjects checked: {} ({} bytes, {} segment rows)\n",
            r["namespaces"], r["objects_checked"], r["bytes_checked"], r["rows_checked"]
        );
        for d in &damaged {
            let names: Vec<&str> =
                d["namespaces"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let _ = writeln!(
                text,
                "DAMAGED {}: {} (referenced by {})",
                d["key"].as_str().unwrap_or("?"),
                d["error"].as_str().unwrap_or("?"),
                names.join(", ")
            );
        }
        emit(&text)?;
    }
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(format!("{} damaged objects", damaged.len()))
    }
}

/// Streams a response body into `w`, returning the bytes written.
pub(super) async fn pump(
    mut resp: reqwest::Response,
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<u64, String> {
    use tokio::io::AsyncWriteExt;
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("the download broke off: {e}"))? {
        w.write_all(&chunk).await.map_err(|e| format!("writing: {e}"))?;
        n += chunk.len() as u64;
    }
    w.flush().await.map_err(|e| format!("writing: {e}"))?;
    Ok(n)
}

pub(super) async fn snapshot(
    client: &Client,
    out: &Output,
    ns: &str,
    file: &std::path::Path,
    generation: Option<u64>,
) -> Result<(), String> {
    use crate::engine::snapshot::{verify_snapshot, AtomicFile};
    check_namespace(ns)?;
    let at = |e: std::io::Error| format!("{}: {e}", file.display());
    let resp = client
        .send_raw(
            reqwest::Method::GET,
            &format!("/v1/namespaces/{ns}/_admin/snapshot"),
            &generation_query(generation),
            None,
        )
        .await?;
    let mut f = AtomicFile::create(file).await.map_err(at)?;
    pump(resp, f.file()).await?;
    let mut check = tokio::io::BufReader::new(tokio::fs::File::open(f.temp_path()).await.map_err(at)?);
    let info =
        verify_snapshot(&mut check).await.map_err(|e| format!("the downloaded snapshot is invalid: {e}"))?;
    f.commit().await.map_err(at)?;
    let v = json!({"namespace": ns, "file": file.display().to_string(), "version": info.generation,
        "objects": info.objects, "bytes": info.bytes});
    if out.json {
        return out.json(&v);
    }
    emit(&format!(
        "saved {ns} at version {} to {} ({} objects, {} bytes)\n",
        info.generation,
        file.display(),
        info.objects,
        info.bytes
    ))
}

pub(super) async fn restore(
    client: &Client,
    out: &Output,
    file: &std::path::Path,
    ns: &str,
) -> Result<(), String> {
    use crate::engine::snapshot::verify_snapshot;
    check_namespace(ns)?;
    let at = |e: std::io::Error| format!("{}: {e}", file.display());
    let mut r = tokio::io::BufReader::new(tokio::fs::File::open(file).await.map_err(at)?);
    verify_snapshot(&mut r).await.map_err(|e| format!("{}: {e}", file.display()))?;
    let bytes = tokio::fs::read(file).await.map_err(at)?;
    let resp = client
        .send_raw(reqwest::Method::POST, &format!("/v1/namespaces/{ns}/_admin/restore"), &[], Some(bytes))
        .await?;
    let v: Value = resp.json().await.map_err(|e| format!("the restore response is not JSON: {e}"))?;
    if out.json {
        return out.json(&v);
    }
    emit(&format!(
        "restored {} into {ns} (version {}, {} objects)\n",
        file.display(),
        v["version"],
        v["objects"]
    ))
}

pub(super) async fn export(
    client: &Client,
    ns: &str,
    file: Option<PathBuf>,
    generation: Option<u64>,
) -> Result<(), String> {
    use crate::engine::snapshot::AtomicFile;
    check_namespace(ns)?;
    let resp = client
        .send_raw(
            reqwest::Method::GET,
            &format!("/v1/namespaces/{ns}/export"),
            &generation_query(generation),
            None,
        )
        .await?;
    match file.filter(|f| f.as_os_str() != "-") {
        None => {
            let mut stdout = tokio::io::stdout();
            pump(resp, &mut stdout).await.map(|_| ())
        }
        Some(path) => {
            let at = |e: std::io::Error| format!("{}: {e}", path.display());
            let mut f = AtomicFile::create(&path).await.map_err(at)?;
            let n = pump(resp, f.file()).await?;
            f.commit().await.map_err(at)?;
            eprintln!("exported {ns} to {} ({n} bytes)", path.display());
            Ok(())
        }
    }
}

//! Images: pull, status by tag/id/digest, list, remove, credentials, missing images.

use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "image",
            "pull",
            "PullImage returns a non-empty image_ref that ImageStatus resolves",
            pull
        ),
        case!(
            "image",
            "pull-with-auth",
            "PullImage accepts credentials",
            pull_with_auth
        ),
        case!(
            "image",
            "status-by-tag-and-id",
            "ImageStatus finds the image by each tag and by id",
            status_lookups
        ),
        case!(
            "image",
            "status-by-digest",
            "ImageStatus finds the image by its repo digest",
            status_by_digest
        ),
        case!("image", "list", "ListImages includes the image", list),
        case!(
            "image",
            "list-filter",
            "a ListImages filter narrows the list to the image",
            list_filter
        ),
        case!(
            "image",
            "missing-image",
            "ImageStatus of a missing image succeeds with no image",
            missing
        ),
        case!(
            "image",
            "remove",
            "RemoveImage removes the image; ImageStatus then finds nothing",
            remove
        ),
        case!(
            "image",
            "fs-info",
            "ImageFsInfo reports the image filesystem",
            fs_info
        ),
        case!(
            "image",
            "status-verbose",
            "ImageStatus with verbose=true returns the image, and info holds JSON values",
            status_verbose
        ),
        case!(
            "image",
            "create-by-id",
            "a container created from the image id (as the kubelet does) runs and reports that image",
            create_by_id
        ),
        case!(
            "image",
            "remove-by-id",
            "RemoveImage by image id removes the image and all its tags",
            remove_by_id
        ),
        case!(
            "image",
            "list-contains-digest",
            "ListImages reports well-formed repo digests of a pulled image, as ImageStatus does",
            list_contains_digest
        ),
        case!(
            "image",
            "pull-by-digest",
            "PullImage of repo@sha256:digest resolves to the same image",
            pull_by_digest
        ),
    ]
}

/// Serialises the cases that remove the removable image (cases run in parallel).
static REMOVABLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pullable(ctx: &Ctx) -> Result<String, Stop> {
    match &ctx.config().pull_image {
        Some(image) => Ok(image.clone()),
        None => skip("no pullable image configured (offline runtime); pass --pull-image to run"),
    }
}

async fn present(ctx: &Ctx) -> Result<Image, Stop> {
    ctx.ensure_image().await?;
    let image = ctx.client().image_status(&ctx.config().image).await?;
    match image {
        Some(image) => Ok(image),
        None => Err(Stop::Fail(crate::conformance::Failure {
            check: "ImageStatus of the suite image".into(),
            expected: "an image".into(),
            got: "none".into(),
        })),
    }
}

async fn pull(ctx: Ctx) -> Result<(), Stop> {
    let image = pullable(&ctx)?;
    let image_ref = ctx.client().pull_image(&image, None).await?;
    let status = ctx.client().image_status(&image).await?;
    check(
        status.is_some(),
        "ImageStatus after PullImage",
        "an image",
        &status,
    )?;
    let by_ref = ctx.client().image_status(&image_ref).await?;
    check(
        by_ref.is_some(),
        "ImageStatus of the returned image_ref",
        "an image",
        &image_ref,
    )
}

async fn pull_with_auth(ctx: Ctx) -> Result<(), Stop> {
    let image = pullable(&ctx)?;
    let auth = AuthConfig {
        username: "cri-testkit".into(),
        password: "not-a-real-secret".into(),
        ..Default::default()
    };
    let image_ref = ctx.client().pull_image(&image, Some(auth)).await?;
    check(!image_ref.is_empty(), "image_ref", "non-empty", image_ref)
}

async fn status_lookups(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let by_id = ctx.client().image_status(&image.id).await?;
    expect_eq(
        "ImageStatus by id",
        Some(&image.id),
        by_id.as_ref().map(|i| &i.id),
    )?;
    check(
        !image.repo_tags.is_empty(),
        "the image has repo tags",
        "at least one",
        &image.repo_tags,
    )?;
    for tag in &image.repo_tags {
        let found = ctx.client().image_status(tag).await?;
        expect_eq(
            &format!("ImageStatus by tag {tag}"),
            Some(&image.id),
            found.as_ref().map(|i| &i.id),
        )?;
    }
    Ok(())
}

async fn status_by_digest(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let Some(digest) = image.repo_digests.first() else {
        return skip("the image has no repo digest (imported, not pulled)");
    };
    let found = ctx.client().image_status(digest).await?;
    expect_eq(
        &format!("ImageStatus by digest {digest}"),
        Some(&image.id),
        found.as_ref().map(|i| &i.id),
    )
}

async fn list(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let all = ctx.client().list_images(None).await?;
    check(
        all.iter().any(|i| i.id == image.id),
        "ListImages includes the image",
        &image.id,
        all.iter().map(|i| &i.id).collect::<Vec<_>>(),
    )
}

async fn list_filter(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let all = ctx.client().list_images(None).await?;
    let filter = ImageFilter {
        image: Some(ImageSpec {
            image: image.id.clone(),
            ..Default::default()
        }),
    };
    let filtered: Vec<String> = ctx
        .client()
        .list_images(Some(filter))
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    if all.len() > 1 && filtered.len() == all.len() {
        return skip(format!(
            "the runtime ignores ImageFilter (all {} images returned)",
            all.len()
        ));
    }
    expect_eq(
        "ListImages filtered by id",
        vec![image.id.clone()],
        filtered,
    )
}

async fn missing(ctx: Ctx) -> Result<(), Stop> {
    let status = ctx
        .client()
        .image_status("cri-testkit.invalid/never-pulled:none")
        .await?;
    expect_eq("image of a missing reference", None, status)
}

async fn remove(ctx: Ctx) -> Result<(), Stop> {
    let Some(image) = ctx.config().removable_image.clone() else {
        return skip("no removable image configured; pass --removable-image to run");
    };
    let _only_remover = REMOVABLE.lock().await;
    if ctx.client().image_status(&image).await?.is_none() {
        if ctx.config().pull_image.is_none() {
            return skip(format!(
                "removable image {image:?} is not present and pulling is disabled"
            ));
        }
        ctx.client().pull_image(&image, None).await?;
    }
    ctx.client().remove_image(&image).await?;
    let after = ctx.client().image_status(&image).await?;
    expect_eq("ImageStatus after RemoveImage", None, after.map(|i| i.id))
}

async fn fs_info(ctx: Ctx) -> Result<(), Stop> {
    let info = ctx.client().image_fs_info().await?;
    check(
        !info.image_filesystems.is_empty(),
        "image_filesystems",
        "at least one",
        &info,
    )?;
    let fs = &info.image_filesystems[0];
    check(
        fs.fs_id.as_ref().is_some_and(|f| !f.mountpoint.is_empty()),
        "fs_id.mountpoint",
        "non-empty",
        fs,
    )?;
    check(fs.used_bytes.is_some(), "used_bytes", "set", fs)
}

async fn status_verbose(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let response = ctx
        .client()
        .call(ImageStatusRequest {
            image: Some(ImageSpec {
                image: ctx.config().image.clone(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await?;
    expect_eq(
        "id of the image from a verbose ImageStatus",
        Some(&image.id),
        response.image.as_ref().map(|i| &i.id),
    )?;
    expect_eq(
        "repo tags of the image from a verbose ImageStatus",
        Some(&image.repo_tags),
        response.image.as_ref().map(|i| &i.repo_tags),
    )?;
    for (key, value) in &response.info {
        if value.is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(value);
        check(
            parsed.is_ok(),
            &format!("info[{key:?}] is JSON"),
            "a JSON value",
            format!(
                "{value:?}: {}",
                parsed.err().map(|e| e.to_string()).unwrap_or_default()
            ),
        )?;
    }
    Ok(())
}

/// The suite image's entry in `ListImages`.
async fn listed(ctx: &Ctx, id: &str) -> Result<Image, Stop> {
    let all = ctx.client().list_images(None).await?;
    let ids: Vec<String> = all.iter().map(|i| i.id.clone()).collect();
    all.into_iter().find(|i| i.id == id).ok_or_else(|| {
        Stop::Fail(crate::conformance::Failure {
            check: "ListImages includes the image".into(),
            expected: id.to_string(),
            got: format!("{ids:?}"),
        })
    })
}

async fn create_by_id(ctx: Ctx) -> Result<(), Stop> {
    let image = present(&ctx).await?;
    let sandbox = ctx.run_sandbox("pod").await?;
    // The kubelet resolves the image first and creates the container from its id, keeping
    // what the pod spec named in user_specified_image.
    let spec = ImageSpec {
        image: image.id.clone(),
        user_specified_image: ctx.config().image.clone(),
        ..Default::default()
    };
    let id = ctx
        .start_container_with(&sandbox, "by-id", ctx.sleeper(), |c| {
            c.image = Some(spec.clone());
        })
        .await?;
    let status = ctx.container_status(&id).await?;
    expect_eq(
        "state of a container created from the image id",
        ContainerState::ContainerRunning,
        status.state(),
    )?;
    check(
        status.image_ref == image.id || image.repo_digests.contains(&status.image_ref),
        "ContainerStatus.image_ref names the image (its id or a repo digest)",
        format!("{} or one of {:?}", image.id, image.repo_digests),
        &status.image_ref,
    )?;
    if !status.image_id.is_empty() {
        expect_eq(
            "ContainerStatus.image_id",
            image.id.as_str(),
            status.image_id.as_str(),
        )?;
    }
    let reported = status
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    check(
        !reported.is_empty(),
        "ContainerStatus.image is set",
        "an image reference",
        &status.image,
    )?;
    let resolved = ctx.client().image_status(&reported).await?;
    expect_eq(
        &format!("the image ContainerStatus.image ({reported}) resolves to"),
        Some(&image.id),
        resolved.as_ref().map(|i| &i.id),
    )?;
    let listed = ctx
        .client()
        .list_containers(Some(ContainerFilter {
            id: id.clone(),
            ..Default::default()
        }))
        .await?;
    let item = listed.iter().find(|c| c.id == id);
    check(
        item.is_some_and(|c| c.image_ref == status.image_ref),
        "ListContainers reports the same image_ref",
        &status.image_ref,
        item.map(|c| &c.image_ref),
    )
}

async fn remove_by_id(ctx: Ctx) -> Result<(), Stop> {
    let Some(removable) = ctx.config().removable_image.clone() else {
        return skip("no removable image configured; pass --removable-image to run");
    };
    let suite_image = present(&ctx).await?;
    let _only_remover = REMOVABLE.lock().await;
    let image = match ctx.client().image_status(&removable).await? {
        Some(image) => image,
        None => {
            if ctx.config().pull_image.is_none() {
                return skip(format!(
                    "removable image {removable:?} is not present and pulling is disabled"
                ));
            }
            ctx.client().pull_image(&removable, None).await?;
            match ctx.client().image_status(&removable).await? {
                Some(image) => image,
                None => {
                    return Err(Stop::Fail(crate::conformance::Failure {
                        check: format!("ImageStatus of {removable} after PullImage"),
                        expected: "an image".into(),
                        got: "none".into(),
                    }));
                }
            }
        }
    };
    if image.id == suite_image.id {
        return skip(format!(
            "removable image {removable:?} is the suite image {:?} (same id): removing it by id \
             would remove the image every case runs",
            ctx.config().image
        ));
    }
    ctx.client().remove_image(&image.id).await?;
    let by_id = ctx.client().image_status(&image.id).await?;
    expect_eq(
        "ImageStatus by id after RemoveImage by id",
        None,
        by_id.map(|i| i.id),
    )?;
    for tag in &image.repo_tags {
        let by_tag = ctx.client().image_status(tag).await?;
        expect_eq(
            &format!("ImageStatus of tag {tag} after RemoveImage by id"),
            None,
            by_tag.map(|i| i.id),
        )?;
    }
    let all = ctx.client().list_images(None).await?;
    check(
        all.iter().all(|i| i.id != image.id),
        "ListImages after RemoveImage by id",
        format!("no {}", image.id),
        all.iter().map(|i| &i.id).collect::<Vec<_>>(),
    )?;
    // The suite image is untouched.
    let still = ctx.client().image_status(&suite_image.id).await?;
    expect_eq(
        "the suite image after removing another image",
        Some(&suite_image.id),
        still.as_ref().map(|i| &i.id),
    )
}

/// `repo@sha256:<64 hex>`: the repository and the hex digest.
fn split_digest(reference: &str) -> Option<(&str, &str)> {
    let (repo, hex) = reference.split_once("@sha256:")?;
    (!repo.is_empty() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((repo, hex))
}

/// The repository of a tag reference (`host/path:tag` → `host/path`).
fn tag_repository(tag: &str) -> &str {
    let last_slash = tag.rfind('/').map_or(0, |i| i + 1);
    match tag[last_slash..].rfind(':') {
        Some(i) => &tag[..last_slash + i],
        None => tag,
    }
}

async fn list_contains_digest(ctx: Ctx) -> Result<(), Stop> {
    // A pulled image must carry its registry digest; an imported one may have none.
    let (reference, pulled) = match &ctx.config().pull_image {
        Some(image) => {
            ctx.client().pull_image(image, None).await?;
            (image.clone(), true)
        }
        None => {
            ctx.ensure_image().await?;
            (ctx.config().image.clone(), false)
        }
    };
    let Some(image) = ctx.client().image_status(&reference).await? else {
        return Err(Stop::Fail(crate::conformance::Failure {
            check: format!("ImageStatus of {reference}"),
            expected: "an image".into(),
            got: "none".into(),
        }));
    };
    let entry = listed(&ctx, &image.id).await?;
    if entry.repo_digests.is_empty() && !pulled {
        return skip(format!(
            "image {reference:?} has no repo digest: it was imported without one, not pulled \
             from a registry (pulling is disabled)"
        ));
    }
    check(
        !entry.repo_digests.is_empty(),
        &format!("repo_digests in ListImages of {reference}, just pulled from a registry"),
        "at least one repo@sha256:digest",
        &entry.repo_digests,
    )?;
    for digest in &entry.repo_digests {
        let parsed = split_digest(digest);
        check(
            parsed.is_some(),
            "a repo digest is repo@sha256:<64 hex>",
            "repo@sha256:<64 hex>",
            digest,
        )?;
        let (repo, _) = parsed.expect("checked");
        if !entry.repo_tags.is_empty() {
            check(
                entry.repo_tags.iter().any(|t| tag_repository(t) == repo),
                &format!("a repo tag of the repository of digest {digest}"),
                format!("a tag {repo}:..."),
                &entry.repo_tags,
            )?;
        }
    }
    let mut from_status = image.repo_digests.clone();
    let mut from_list = entry.repo_digests.clone();
    from_status.sort();
    from_list.sort();
    expect_eq(
        "repo_digests: ListImages and ImageStatus agree",
        from_status,
        from_list,
    )
}

async fn pull_by_digest(ctx: Ctx) -> Result<(), Stop> {
    let reference = pullable(&ctx)?;
    ctx.client().pull_image(&reference, None).await?;
    let Some(image) = ctx.client().image_status(&reference).await? else {
        return Err(Stop::Fail(crate::conformance::Failure {
            check: format!("ImageStatus of {reference} after PullImage"),
            expected: "an image".into(),
            got: "none".into(),
        }));
    };
    let Some(digest) = image.repo_digests.first().cloned() else {
        return skip(format!(
            "image {reference:?} has no repo digest to pull by (the runtime records none)"
        ));
    };
    let image_ref = ctx.client().pull_image(&digest, None).await?;
    let by_ref = ctx.client().image_status(&image_ref).await?;
    expect_eq(
        &format!("the image PullImage({digest}) returned ({image_ref})"),
        Some(&image.id),
        by_ref.as_ref().map(|i| &i.id),
    )?;
    let by_digest = ctx.client().image_status(&digest).await?;
    expect_eq(
        &format!("ImageStatus by digest {digest} after pulling it"),
        Some(&image.id),
        by_digest.as_ref().map(|i| &i.id),
    )?;
    // The tag still names the same image.
    let by_tag = ctx.client().image_status(&reference).await?;
    expect_eq(
        &format!("ImageStatus of {reference} after pulling by digest"),
        Some(&image.id),
        by_tag.as_ref().map(|i| &i.id),
    )
}

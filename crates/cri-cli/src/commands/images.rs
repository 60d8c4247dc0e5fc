//! `images`, `inspecti`, `pull`, `rmi` and `imagefsinfo`: the image service.

use std::io::Write;

use cri_api::v1::{
    AuthConfig, Image, ImageFilter, ImageSpec, ImageStatusRequest, ImageStatusResponse,
    ListImagesResponse, PodSandboxConfig, PullImageRequest,
};

use crate::cli::{DataFormat, ImagesArgs, InspectArgs, ListFormat, PullArgs, RmiArgs};
use crate::commands::{Ctx, for_each_id, read_message};
use crate::error::{CliError, Result};
use crate::output::{self, Table, short_id, to_json};

/// `docker.io/library/busybox:1.36` → (`docker.io/library/busybox`, `1.36`); a reference
/// without a tag gets `<none>`.
pub(crate) fn split_tag(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            &reference[last_slash + i + 1..],
        ),
        None => (reference, "<none>"),
    }
}

/// The digest (`sha256:…`) `image` has in `repository`, if any.
fn digest_for<'a>(image: &'a Image, repository: &str) -> Option<&'a str> {
    image
        .repo_digests
        .iter()
        .filter_map(|d| d.split_once('@'))
        .find(|(repo, _)| *repo == repository)
        .or_else(|| image.repo_digests.iter().find_map(|d| d.split_once('@')))
        .map(|(_, digest)| digest)
}

/// `images`.
pub(crate) async fn list(ctx: &mut Ctx<'_>, args: ImagesArgs) -> Result<i32> {
    let filter = args.image.clone().map(|image| ImageFilter {
        image: Some(ImageSpec {
            image,
            ..Default::default()
        }),
    });
    let mut images = ctx.client.list_images(filter).await?;
    images.sort_by(|a, b| {
        a.repo_tags
            .first()
            .cmp(&b.repo_tags.first())
            .then(a.id.cmp(&b.id))
    });

    let format = if args.quiet {
        ListFormat::Id
    } else {
        args.output
    };
    match format {
        ListFormat::Id => {
            let mut seen = std::collections::HashSet::new();
            for image in &images {
                if seen.insert(image.id.as_str()) {
                    writeln!(ctx.out, "{}", image.id)?;
                }
            }
        }
        ListFormat::Json | ListFormat::Yaml => {
            let doc = to_json(&ListImagesResponse { images })?;
            if let Some(document) = format.document() {
                output::write_document(ctx.out, &doc, document)?;
            }
        }
        ListFormat::Table => {
            let mut header = vec!["IMAGE", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "SIZE"]);
            let mut table = Table::new(&header);
            for image in &images {
                let mut names: Vec<(String, String)> = image
                    .repo_tags
                    .iter()
                    .map(|t| {
                        let (repo, tag) = split_tag(t);
                        (repo.to_string(), tag.to_string())
                    })
                    .collect();
                if names.is_empty() {
                    let repo = image
                        .repo_digests
                        .first()
                        .and_then(|d| d.split_once('@'))
                        .map_or("<none>", |(repo, _)| repo);
                    names.push((repo.to_string(), "<none>".to_string()));
                }
                for (repo, tag) in names {
                    let mut row = vec![repo.clone(), tag];
                    if args.digests {
                        let digest = digest_for(image, &repo).unwrap_or("<none>");
                        row.push(short_id(digest, args.no_trunc));
                    }
                    row.push(short_id(&image.id, args.no_trunc));
                    row.push(output::human_size(image.size));
                    table.row(row);
                }
            }
            table.write(ctx.out)?;
        }
    }
    Ok(0)
}

async fn status(ctx: &Ctx<'_>, image: &str, verbose: bool) -> Result<ImageStatusResponse> {
    let response = ctx
        .client
        .call(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose,
        })
        .await?;
    if response.image.is_none() {
        return Err(CliError::msg(format!("no such image {image:?}")));
    }
    Ok(response)
}

/// `inspecti`: the `ImageStatusResponse` of each image.
pub(crate) async fn inspect(ctx: &mut Ctx<'_>, args: InspectArgs) -> Result<i32> {
    let mut responses = Vec::new();
    for image in &args.ids {
        responses.push(status(ctx, image, !args.quiet).await?);
    }
    output::write_inspected(ctx.out, &responses, args.output, write_status_text)?;
    Ok(0)
}

fn write_status_text(out: &mut dyn Write, response: &ImageStatusResponse) -> Result<()> {
    let image = response.image.clone().unwrap_or_default();
    writeln!(out, "ID: {}", image.id)?;
    for tag in &image.repo_tags {
        writeln!(out, "Tag: {tag}")?;
    }
    for digest in &image.repo_digests {
        writeln!(out, "Digest: {digest}")?;
    }
    writeln!(out, "Size: {}", output::human_size(image.size))?;
    if let Some(uid) = image.uid {
        writeln!(out, "Uid: {}", uid.value)?;
    }
    if !image.username.is_empty() {
        writeln!(out, "Username: {}", image.username)?;
    }
    writeln!(out, "Pinned: {}", image.pinned)?;
    Ok(())
}

/// The credentials `--creds` or `--auth` give.
pub(crate) fn auth_config(creds: Option<&str>, auth: Option<&str>) -> Result<Option<AuthConfig>> {
    match (creds, auth) {
        (Some(_), Some(_)) => Err(CliError::msg("give --creds or --auth, not both")),
        (Some(creds), None) => match creds.split_once(':') {
            Some((username, password)) if !username.is_empty() => Ok(Some(AuthConfig {
                username: username.to_string(),
                password: password.to_string(),
                ..Default::default()
            })),
            _ => Err(CliError::msg(
                "--creds needs USERNAME:PASSWORD (interactive password prompts are not supported)",
            )),
        },
        (None, Some(auth)) => Ok(Some(AuthConfig {
            auth: auth.to_string(),
            ..Default::default()
        })),
        (None, None) => Ok(None),
    }
}

/// `pull`: pulls the image (no deadline, as the kubelet) and prints its reference.
pub(crate) async fn pull(ctx: &mut Ctx<'_>, args: PullArgs) -> Result<i32> {
    let auth = auth_config(args.creds.as_deref(), args.auth.as_deref())?;
    let sandbox_config = args
        .pod_config
        .as_deref()
        .map(|path| read_message::<PodSandboxConfig>(path, "pod sandbox config"))
        .transpose()?;
    let response = ctx
        .client
        .call(PullImageRequest {
            image: Some(ImageSpec {
                image: args.image,
                ..Default::default()
            }),
            auth,
            sandbox_config,
        })
        .await?;
    writeln!(ctx.out, "Image is up to date for {}", response.image_ref)?;
    Ok(0)
}

/// `rmi`: resolves each name to its image (ImageStatus), removes it and prints
/// `Deleted: <tag>` for each of its tags (its id when it has none).
pub(crate) async fn remove(ctx: &mut Ctx<'_>, args: RmiArgs) -> Result<i32> {
    let names = if args.all {
        let images = ctx.client.list_images(None).await?;
        images.into_iter().map(|i| i.id).collect()
    } else {
        args.images
    };
    for_each_id(ctx, &names, |client, name| async move {
        let image = client
            .image_status(name.clone())
            .await?
            .ok_or_else(|| CliError::msg(format!("no such image {name:?}")))?;
        client.remove_image(image.id.clone()).await?;
        let deleted = if image.repo_tags.is_empty() {
            vec![image.id]
        } else {
            image.repo_tags
        };
        Ok(deleted
            .iter()
            .map(|d| format!("Deleted: {d}"))
            .collect::<Vec<_>>()
            .join("\n"))
    })
    .await
}

/// `imagefsinfo`: the `ImageFsInfoResponse`.
pub(crate) async fn fs_info(ctx: &mut Ctx<'_>, output: DataFormat) -> Result<i32> {
    let info = ctx.client.image_fs_info().await?;
    output::write_document(ctx.out, &to_json(&info)?, output.document())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(
            split_tag("docker.io/library/busybox:1.36"),
            ("docker.io/library/busybox", "1.36")
        );
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "<none>")
        );
        assert_eq!(
            split_tag("localhost:5000/app:v2"),
            ("localhost:5000/app", "v2")
        );
    }

    #[test]
    fn credentials() {
        let auth = auth_config(Some("me:secret:x"), None).unwrap().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("me", "secret:x")
        );
        let auth = auth_config(None, Some("bWU6c2VjcmV0")).unwrap().unwrap();
        assert_eq!(auth.auth, "bWU6c2VjcmV0");
        assert!(auth_config(Some("me"), None).is_err());
        assert!(auth_config(Some("a:b"), Some("c")).is_err());
        assert!(auth_config(None, None).unwrap().is_none());
    }
}

//! The CRI view of stored images.

use super::Image;

impl Image {
    /// The user the image's config says processes run as (`User`, e.g. `1000`, `nobody`,
    /// `1000:1000`), if it says one.
    pub fn user(&self) -> Option<&str> {
        self.config
            .config()
            .as_ref()
            .and_then(|c| c.user().as_deref())
            .filter(|u| !u.is_empty())
    }

    /// The CRI `Image`: id, tags, digests, size, and the config's user split as the kubelet
    /// expects it: a numeric user (`1000` or `1000:50`) becomes `uid`, a name becomes
    /// `username`. `spec.image` is the id; `pinned` is false.
    ///
    /// ```
    /// use cri_oci::image::Image;
    ///
    /// let config = serde_json::from_value(serde_json::json!({
    ///     "architecture": "amd64", "os": "linux",
    ///     "config": { "User": "1000:50" },
    ///     "rootfs": { "type": "layers", "diff_ids": [] },
    /// })).unwrap();
    /// let image = Image {
    ///     id: "sha256:aa".into(),
    ///     repo_tags: vec!["docker.io/library/app:1".into()],
    ///     repo_digests: vec![],
    ///     size: 42,
    ///     config,
    ///     layers: vec![],
    /// };
    /// let cri = image.to_cri();
    /// assert_eq!(cri.uid.map(|u| u.value), Some(1000));
    /// assert_eq!(cri.username, "");
    /// assert_eq!(cri.spec.unwrap().image, "sha256:aa");
    /// ```
    pub fn to_cri(&self) -> cri_api::v1::Image {
        let (uid, username) = match self.user().map(|u| u.split(':').next().unwrap_or(u)) {
            Some(user) if !user.is_empty() => match user.parse::<i64>() {
                Ok(uid) => (Some(cri_api::v1::Int64Value { value: uid }), String::new()),
                Err(_) => (None, user.to_string()),
            },
            _ => (None, String::new()),
        };
        cri_api::v1::Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size: self.size,
            uid,
            username,
            spec: Some(cri_api::v1::ImageSpec {
                image: self.id.clone(),
                ..Default::default()
            }),
            pinned: false,
        }
    }
}

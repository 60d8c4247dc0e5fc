//! Server-streaming responses: the type runtimes return and the batching the `Stream*`
//! defaults use.

use std::pin::Pin;

use futures_util::Stream;

use crate::Result;

/// A stream of responses for a server-streaming RPC (`Stream*`, `GetContainerEvents`).
///
/// An `Err` item ends the call with that error's status.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'static>>;

/// How many items the derived `Stream*` methods put in one response.
///
/// Small enough that a batch of the largest CRI objects (container stats with many metrics)
/// stays far below the 16 MiB message limit, large enough that a node's worth of containers
/// takes a handful of messages.
pub const BATCH_SIZE: usize = 256;

/// Splits `items` into responses of at most `size` items, built by `wrap`.
///
/// Every item appears in exactly one response, no response is empty (an empty list yields an
/// empty stream: immediate end-of-stream), and order is kept. `size` 0 is treated as 1.
///
/// ```
/// use futures_util::StreamExt;
/// use cri_api::v1::{Container, StreamContainersResponse};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let containers = vec![Container::default(); 5];
/// let stream = cri_server::stream::batches(containers, 2, |containers| {
///     StreamContainersResponse { containers }
/// });
/// let sizes: Vec<usize> = stream.map(|r| r.unwrap().containers.len()).collect().await;
/// assert_eq!(sizes, [2, 2, 1]);
/// # });
/// ```
pub fn batches<T, R>(
    items: Vec<T>,
    size: usize,
    wrap: impl Fn(Vec<T>) -> R + Send + 'static,
) -> ResponseStream<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let size = size.max(1);
    let mut rest = items.into_iter();
    Box::pin(futures_util::stream::iter(std::iter::from_fn(move || {
        let batch: Vec<T> = rest.by_ref().take(size).collect();
        (!batch.is_empty()).then(|| Ok(wrap(batch)))
    })))
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    async fn collect(items: Vec<u32>, size: usize) -> Vec<Vec<u32>> {
        batches(items, size, |batch| batch)
            .map(|r| r.unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn every_item_in_exactly_one_non_empty_batch() {
        for (n, size) in [(0, 3), (1, 3), (3, 3), (4, 3), (1000, 256), (7, 0)] {
            let items: Vec<u32> = (0..n).collect();
            let got = collect(items.clone(), size).await;
            assert!(got.iter().all(|b| !b.is_empty() && b.len() <= size.max(1)));
            assert_eq!(got.concat(), items, "n={n} size={size}");
        }
    }
}

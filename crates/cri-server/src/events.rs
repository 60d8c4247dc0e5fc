//! Fan-out of container events for `GetContainerEvents`.

use cri_api::v1::ContainerEventResponse;
use tokio::sync::broadcast;

use crate::Error;
use crate::stream::ResponseStream;

/// Publishes container events to every `GetContainerEvents` subscriber.
///
/// Publishing never blocks and never fails: with no subscriber the event is dropped. Each
/// subscriber has a bounded queue (`capacity` events); one that falls further behind is cut
/// off with `ResourceExhausted` ("lagged ... events"), so it knows to resubscribe and resync
/// with `ListContainers`, while the runtime and the other subscribers carry on.
///
/// ```
/// use cri_server::EventBroadcaster;
/// use cri_server::cri_api::v1::{ContainerEventResponse, ContainerEventType};
/// use futures_util::StreamExt;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let events = EventBroadcaster::new(1024);
/// let mut subscriber = events.subscribe();
/// events.publish(ContainerEventResponse {
///     container_id: "c1".into(),
///     container_event_type: ContainerEventType::ContainerStartedEvent as i32,
///     ..Default::default()
/// });
/// let event = subscriber.next().await.unwrap().unwrap();
/// assert_eq!(event.container_id, "c1");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct EventBroadcaster {
    sender: broadcast::Sender<ContainerEventResponse>,
}

impl Default for EventBroadcaster {
    /// A broadcaster whose subscribers may fall 1024 events behind.
    fn default() -> Self {
        Self::new(1024)
    }
}

impl EventBroadcaster {
    /// A broadcaster whose subscribers may fall `capacity` events behind (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Sends `event` to every current subscriber; never blocks.
    pub fn publish(&self, event: ContainerEventResponse) {
        // An error only means nobody is subscribed, which is fine.
        let _ = self.sender.send(event);
    }

    /// How many subscribers are connected now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// A new subscriber's stream: every event published from now on, in order. Return it
    /// from `RuntimeService::get_container_events`.
    pub fn subscribe(&self) -> ResponseStream<ContainerEventResponse> {
        let receiver = self.sender.subscribe();
        Box::pin(futures_util::stream::unfold(
            Some(receiver),
            |receiver| async move {
                let mut receiver = receiver?;
                match receiver.recv().await {
                    Ok(event) => Some((Ok(event), Some(receiver))),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Some((
                        Err(Error::resource_exhausted(format!(
                            "event subscriber lagged and missed {missed} events; \
                             resubscribe and resync with ListContainers"
                        ))),
                        None,
                    )),
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn event(id: usize) -> ContainerEventResponse {
        ContainerEventResponse {
            container_id: format!("c{id}"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let events = EventBroadcaster::new(16);
        let mut a = events.subscribe();
        let mut b = events.subscribe();
        assert_eq!(events.subscribers(), 2);
        for i in 0..5 {
            events.publish(event(i));
        }
        for sub in [&mut a, &mut b] {
            for i in 0..5 {
                assert_eq!(
                    sub.next().await.unwrap().unwrap().container_id,
                    format!("c{i}")
                );
            }
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_cut_off_without_blocking_anyone() {
        let events = EventBroadcaster::new(4);
        let mut slow = events.subscribe();
        let mut fast = events.subscribe();
        for i in 0..10 {
            events.publish(event(i)); // never blocks even though `slow` reads nothing
            assert_eq!(
                fast.next().await.unwrap().unwrap().container_id,
                format!("c{i}")
            );
        }
        let err = slow.next().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)));
        assert!(err.to_string().contains("missed 6 events"), "{err}");
        assert!(slow.next().await.is_none(), "the lagging stream ends");
    }

    #[tokio::test]
    async fn publishing_without_subscribers_is_fine_and_streams_end_when_dropped() {
        let events = EventBroadcaster::new(4);
        events.publish(event(0));
        let mut sub = events.subscribe();
        drop(events);
        assert!(sub.next().await.is_none());
    }
}

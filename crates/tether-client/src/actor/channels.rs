//! The application's channels against the server's view of them: one
//! subscribe or unsubscribe in flight per channel, and the subscribe's
//! answer (recovered publications, `Unrecovered`, retry later).

use serde_json::value::RawValue;
use tether_protocol::{Command, ErrorBody, StreamPosition, Subscribed};

use super::{Actor, Call, Internal, Link, RETRIABLE};
use crate::backoff::backoff;
use crate::events::SubscriptionEvent;

impl Actor {
    /// Brings the server's view of `channel` to what the application wants,
    /// one request at a time.
    pub(super) fn reconcile(&mut self, channel: &str, link: Option<&mut Link>) {
        let Some(entry) = self.channels.get(channel) else {
            return;
        };
        let Some(link) = link.filter(|l| l.connected_at.is_some()) else {
            if entry.handle.is_none() && !entry.server {
                self.channels.remove(channel);
            }
            return;
        };
        if entry.in_flight {
            return;
        }
        let name = channel.to_owned();
        if entry.handle.is_some() && !entry.server {
            let recover = entry.epoch.clone().map(|epoch| StreamPosition {
                offset: entry.offset,
                epoch,
            });
            let recovering = recover.is_some();
            self.channels.get_mut(channel).expect("present").in_flight = true;
            self.send_internal(
                link,
                Internal::Subscribe {
                    channel: name.clone(),
                    recovering,
                },
                Command::Subscribe {
                    channel: name,
                    recover,
                },
            );
        } else if entry.handle.is_none() && entry.server {
            self.channels.get_mut(channel).expect("present").in_flight = true;
            self.send_internal(
                link,
                Internal::Unsubscribe {
                    channel: name.clone(),
                },
                Command::Unsubscribe { channel: name },
            );
        } else if entry.handle.is_none() {
            self.channels.remove(channel);
        }
    }

    /// A subscribe's answer; then what the application wants next, unless
    /// the server asked to retry later (a timer does that).
    pub(super) fn subscribed(
        &mut self,
        channel: &str,
        recovering: bool,
        outcome: Result<Box<RawValue>, ErrorBody>,
        link: &mut Link,
    ) {
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        entry.in_flight = false;
        let result = outcome.and_then(|raw| {
            serde_json::from_str::<Subscribed>(raw.get()).map_err(|e| ErrorBody {
                code: 100,
                message: e.to_string(),
            })
        });
        match result {
            Ok(result) => {
                entry.server = true;
                let recovered = recovering && result.recovered == Some(true);
                let epoch = result.epoch.to_string();
                entry.epoch = Some(epoch.clone());
                if recovered {
                    for publication in result.publications {
                        self.deliver(channel, publication.offset, publication.data);
                    }
                    let entry = self.channels.get_mut(channel).expect("present");
                    entry.offset = entry.offset.max(result.offset);
                } else {
                    entry.offset = result.offset;
                    if recovering {
                        entry.emit(SubscriptionEvent::Unrecovered {
                            epoch: epoch.clone(),
                            offset: result.offset,
                        });
                    }
                }
                self.channels[channel].emit(SubscriptionEvent::Subscribed {
                    epoch,
                    offset: result.offset,
                    recovering,
                    recovered,
                });
            }
            Err(error) if error.code == 104 => entry.server = true,
            Err(error) if RETRIABLE.contains(&error.code) => {
                let (min, max) = (
                    self.config.min_reconnect_delay,
                    self.config.max_reconnect_delay,
                );
                let delay = backoff(1, min, max, &mut self.rng);
                let myself = self.myself.clone();
                let channel = channel.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(myself) = myself.upgrade() {
                        let _ = myself.send(Call::Retry { channel });
                    }
                });
                return;
            }
            Err(error) => {
                entry.emit(SubscriptionEvent::Failed(error.into()));
                entry.handle = None;
            }
        }
        self.reconcile(channel, Some(link));
    }
}

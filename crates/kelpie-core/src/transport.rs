//! The transport seam: unreliable, unordered node-to-node messages.
//!
//! [`Transport::send`] hands a message to the network and returns at once;
//! the message may be dropped, delayed, duplicated or reordered, and
//! protocols on top must tolerate all of it. The simulator's network does
//! each of those from the seed. (The TCP transport comes with the cluster
//! layer; a single node needs none and uses [`NoTransport`].)

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::id::NodeId;
use crate::limits::MESSAGE_BYTES_MAX;

/// One message as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sending node.
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// The message bytes.
    pub payload: Bytes,
}

/// A message could not be handed to the network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The payload is larger than [`MESSAGE_BYTES_MAX`].
    #[error("message of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The payload size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// No route to the node is known (not a member, or no network).
    #[error("no route to node {node}")]
    NoRoute {
        /// The destination.
        node: NodeId,
    },
    /// The transport is shut down; no message will be received again.
    #[error("transport closed")]
    Closed,
}

/// Checks a payload against [`MESSAGE_BYTES_MAX`].
pub fn check_message_size(payload: &[u8]) -> Result<(), TransportError> {
    if payload.len() > MESSAGE_BYTES_MAX {
        return Err(TransportError::TooLarge {
            bytes: payload.len(),
            max: MESSAGE_BYTES_MAX,
        });
    }
    Ok(())
}

/// Sends and receives messages for one node.
pub trait Transport: Send + Sync + 'static {
    /// The node this transport belongs to.
    fn local_node(&self) -> &NodeId;

    /// Hands `payload` to the network for `to`. `Ok` does not mean delivered.
    fn send(&self, to: &NodeId, payload: Bytes) -> Result<(), TransportError>;

    /// The next message for this node.
    ///
    /// Cancellation: dropping the future loses no message; the next call
    /// receives it.
    fn recv(&self) -> BoxFuture<'_, Result<Envelope, TransportError>>;
}

/// A shared transport handle.
pub type SharedTransport = Arc<dyn Transport>;

/// The transport of a node that is alone: every send fails with `NoRoute`,
/// and nothing is ever received.
#[derive(Debug, Clone)]
pub struct NoTransport {
    node: NodeId,
}

impl NoTransport {
    /// A transport for the single node `node`.
    pub fn new(node: NodeId) -> Self {
        Self { node }
    }
}

impl Transport for NoTransport {
    fn local_node(&self) -> &NodeId {
        &self.node
    }

    fn send(&self, to: &NodeId, payload: Bytes) -> Result<(), TransportError> {
        check_message_size(&payload)?;
        Err(TransportError::NoRoute { node: to.clone() })
    }

    fn recv(&self) -> BoxFuture<'_, Result<Envelope, TransportError>> {
        Box::pin(futures::future::pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_messages_are_refused_before_sending() {
        let transport = NoTransport::new(NodeId::from_index(0));
        let big = Bytes::from(vec![0u8; MESSAGE_BYTES_MAX + 1]);
        assert_eq!(
            transport.send(&NodeId::from_index(1), big),
            Err(TransportError::TooLarge {
                bytes: MESSAGE_BYTES_MAX + 1,
                max: MESSAGE_BYTES_MAX
            })
        );
        assert_eq!(
            transport.send(&NodeId::from_index(1), Bytes::from_static(b"hi")),
            Err(TransportError::NoRoute {
                node: NodeId::from_index(1)
            })
        );
    }
}

//! The gRPC side of the load: channels to the service, one client per caller, per-call
//! deadlines, and the label a failed call is counted under.

use std::time::Duration;

use anyhow::Context as _;
use certification_service::grpc::proto::{
    VerifyRequest, certification_service_client::CertificationServiceClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::LoadArgs;

pub(crate) async fn channels(load: &LoadArgs) -> anyhow::Result<Vec<Channel>> {
    let count = if load.connections == 0 {
        load.concurrency.div_ceil(100)
    } else {
        load.connections
    };
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(load.addr.clone())
            .context("--addr must be http://host:port")?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", load.addr))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// One gRPC client per caller, spread over the connections.
pub(crate) fn grpc_clients(
    channels: &[Channel],
    concurrency: usize,
) -> Vec<CertificationServiceClient<Channel>> {
    (0..concurrency)
        .map(|index| CertificationServiceClient::new(channels[index % channels.len()].clone()))
        .collect()
}

/// A failed call's row label: its gRPC code.
pub(crate) fn code(status: tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// One Verify; an OK answer that was to bind a person and did not is a failure too.
pub(crate) async fn verify_once(
    client: &mut CertificationServiceClient<Channel>,
    request: VerifyRequest,
    timeout: Duration,
    must_bind: bool,
) -> Result<(), String> {
    let answer = client
        .verify(with_timeout(request, timeout))
        .await
        .map_err(code)?
        .into_inner();
    if must_bind && !answer.bound {
        return Err("answered OK without binding".to_owned());
    }
    Ok(())
}

pub(crate) fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

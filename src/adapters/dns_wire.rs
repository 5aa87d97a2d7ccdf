//! Talking DNS to one server with `hickory-client`: queries over UDP with TCP fallback on
//! truncation, and RFC 2136 updates over TCP, optionally TSIG-signed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_client::client::{Client, ClientHandle};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;
use hickory_proto::udp::UdpClientStream;
use hickory_proto::xfer::{DnsHandle, FirstAnswer};

use crate::engine::ports::{LookupFailure, TxtAnswer};

/// Signs requests (TSIG) before they leave.
pub(crate) type Signer = Arc<dyn hickory_proto::op::MessageFinalizer>;

fn failure(server: SocketAddr, reason: impl ToString) -> LookupFailure {
    LookupFailure {
        server: server.to_string(),
        reason: reason.to_string(),
    }
}

async fn udp_client(
    server: SocketAddr,
    timeout: Duration,
    signer: Option<Signer>,
) -> Result<Client, LookupFailure> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout))
        .with_signer(signer)
        .build();
    let (client, background) = Client::connect(stream)
        .await
        .map_err(|e| failure(server, e))?;
    tokio::spawn(background);
    Ok(client)
}

async fn tcp_client(
    server: SocketAddr,
    timeout: Duration,
    signer: Option<Signer>,
) -> Result<Client, LookupFailure> {
    let (stream, handle) =
        TcpClientStream::new(server, None, Some(timeout), TokioRuntimeProvider::default());
    let (client, background) = Client::with_timeout(stream, handle, timeout, signer)
        .await
        .map_err(|e| failure(server, e))?;
    tokio::spawn(background);
    Ok(client)
}

/// Asks `server` for the TXT records at `name`: UDP first, TCP when the answer is truncated.
pub(crate) async fn query_txt(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<TxtAnswer, LookupFailure> {
    let name = Name::from_ascii(name).map_err(|e| failure(server, format!("bad name: {e}")))?;
    let mut client = udp_client(server, timeout, None).await?;
    let mut response = client
        .query(name.clone(), DNSClass::IN, RecordType::TXT)
        .await
        .map_err(|e| failure(server, e))?;
    if response.truncated() {
        let mut client = tcp_client(server, timeout, None).await?;
        response = client
            .query(name, DNSClass::IN, RecordType::TXT)
            .await
            .map_err(|e| failure(server, e))?;
    }
    txt_answer(server, &response)
}

/// Decodes one raw DNS response (wire format) from `server` into the TXT records it answers,
/// exactly as [`query_txt`] reads a reply. The `dns_txt` fuzz target drives it with
/// arbitrary bytes.
pub fn decode_txt_response(server: SocketAddr, bytes: &[u8]) -> Result<TxtAnswer, LookupFailure> {
    let message =
        Message::from_vec(bytes).map_err(|e| failure(server, format!("undecodable reply: {e}")))?;
    txt_answer(server, &message)
}

fn txt_answer(server: SocketAddr, response: &Message) -> Result<TxtAnswer, LookupFailure> {
    match response.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(TxtAnswer::NoRecords),
        code => return Err(failure(server, format!("server answered {code}"))),
    }
    let records: Vec<String> = response
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::TXT(txt) => Some(
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect();
    Ok(if records.is_empty() {
        TxtAnswer::NoRecords
    } else {
        TxtAnswer::Records(records)
    })
}

/// Sends an RFC 2136 update over TCP and checks the server accepted it.
pub(crate) async fn send_update(
    server: SocketAddr,
    update: Message,
    timeout: Duration,
    signer: Option<Signer>,
) -> Result<(), LookupFailure> {
    let client = tcp_client(server, timeout, signer).await?;
    let response = client
        .send(update)
        .first_answer()
        .await
        .map_err(|e| failure(server, e))?;
    match response.response_code() {
        ResponseCode::NoError => Ok(()),
        code => Err(failure(
            server,
            format!(
                "update refused: {code} (check the zone name, the TSIG key and the server's update ACL)"
            ),
        )),
    }
}

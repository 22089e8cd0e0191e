//! `plan_trip`: a stateful call that elicits, samples, reports progress, logs and writes a file.

use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::{
    RoleServer,
    model::{
        CancelledNotificationParam, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
        ElicitRequest, ElicitRequestParams, ElicitationAction, ElicitationSchema, LoggingLevel,
        LoggingMessageNotificationParam, SamplingMessage, ServerRequest,
    },
    service::{PeerRequestOptions, RequestContext},
};
use serde::Deserialize;

use crate::{TRIP_PLAN_FILE, progress};

/// What the user answers to `plan_trip`'s form.
#[derive(Deserialize)]
struct TripRequest {
    destination: String,
    days: u32,
    #[serde(default)]
    budget: Budget,
    #[serde(default = "yes")]
    flights: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Budget {
    Shoestring,
    #[default]
    Comfort,
    Luxury,
}

impl Budget {
    fn as_str(self) -> &'static str {
        match self {
            Budget::Shoestring => "shoestring",
            Budget::Comfort => "comfort",
            Budget::Luxury => "luxury",
        }
    }
}

/// Runs the tool; see `DemoServer::plan_trip` for the contract.
pub(crate) async fn plan_trip(
    ctx: &RequestContext<RoleServer>,
    info_logs: &AtomicBool,
) -> Result<String, String> {
    let caps = ctx.client_capabilities().unwrap_or_default();
    let form = caps
        .elicitation
        .as_ref()
        .is_some_and(|e| e.form.is_some() || e.url.is_none());
    let missing: Vec<&str> = [
        (!form, "elicitation (form)"),
        (caps.sampling.is_none(), "sampling"),
    ]
    .into_iter()
    .filter_map(|(lacking, name)| lacking.then_some(name))
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "plan_trip needs client capabilities the client did not declare: {}",
            missing.join(", ")
        ));
    }

    progress(ctx, 1, 4, "asking for trip details").await;
    let elicit = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: "Where and how do you want to travel?".into(),
        requested_schema: trip_schema()?,
    };
    let ClientResult::ElicitResult(answer) = ask(
        ctx,
        ServerRequest::ElicitRequest(ElicitRequest::new(elicit)),
    )
    .await?
    else {
        return Err("elicitation: unexpected response".into());
    };
    let content = match answer.action {
        ElicitationAction::Accept => answer.content.unwrap_or_default(),
        ElicitationAction::Decline => {
            return Ok("Trip planning stopped: the user chose to decline.".into());
        }
        _ => return Ok("Trip planning stopped: the user chose to cancel.".into()),
    };
    let trip: TripRequest =
        serde_json::from_value(content).map_err(|e| format!("invalid trip details: {e}"))?;
    if trip.destination.trim().is_empty() || !(1..=30).contains(&trip.days) {
        return Err("invalid trip details: destination must be non-empty and days 1-30".into());
    }
    let (destination, days, budget) = (&trip.destination, trip.days, trip.budget.as_str());

    progress(ctx, 2, 4, "asking the model for an itinerary").await;
    let mut prompt = format!("Write a {days}-day {budget} itinerary for {destination}.");
    if trip.flights {
        prompt.push_str(" Include flights.");
    }
    let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 400)
        .with_system_prompt("You are a travel planner.");
    let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
    let ClientResult::CreateMessageResult(sampled) = ask(ctx, request).await? else {
        return Err("sampling: unexpected response".into());
    };
    let itinerary: String = sampled
        .message
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.as_str()))
        .collect();

    progress(ctx, 3, 4, "saving the plan").await;
    let flights = if trip.flights { "yes" } else { "no" };
    let plan =
        format!("Trip to {destination}: {days} days, {budget}, flights {flights}.\n\n{itinerary}");
    tokio::fs::write(TRIP_PLAN_FILE, &plan)
        .await
        .map_err(|e| format!("saving {TRIP_PLAN_FILE}: {e}"))?;
    if info_logs.load(Ordering::Relaxed) {
        let message = format!("saved the {days}-day plan for {destination} to {TRIP_PLAN_FILE}");
        let log = LoggingMessageNotificationParam::new(LoggingLevel::Info, message.into())
            .with_logger("plan_trip");
        let _ = ctx.peer.notify_logging_message(log).await;
    }

    progress(ctx, 4, 4, "done").await;
    Ok(plan)
}

/// The form `plan_trip` asks the user to fill in.
fn trip_schema() -> Result<ElicitationSchema, String> {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "destination": { "type": "string", "title": "Destination", "minLength": 1 },
            "days": { "type": "integer", "title": "Days", "minimum": 1, "maximum": 30 },
            "budget": {
                "type": "string", "title": "Budget",
                "enum": ["shoestring", "comfort", "luxury"], "default": "comfort"
            },
            "flights": { "type": "boolean", "title": "Include flights", "default": true }
        },
        "required": ["destination", "days"]
    });
    serde_json::from_value(schema).map_err(|e| format!("trip form schema: {e}"))
}

/// Send a request to the client on behalf of the tool call in `ctx`. If that call is
/// cancelled first, tell the client to drop the request too.
async fn ask(
    ctx: &RequestContext<RoleServer>,
    request: ServerRequest,
) -> Result<ClientResult, String> {
    let handle = ctx
        .peer
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .map_err(|e| format!("sending request to the client: {e}"))?;
    let (peer, id) = (handle.peer.clone(), handle.id.clone());
    tokio::select! {
        response = handle.await_response() => response.map_err(|e| format!("client request failed: {e}")),
        () = ctx.ct.cancelled() => {
            let reason = Some("the tool call was cancelled".to_owned());
            let _ = peer.notify_cancelled(CancelledNotificationParam::new(Some(id), reason)).await;
            Err("cancelled".into())
        }
    }
}

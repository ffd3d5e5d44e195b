// The live feed: Server-Sent Events read with fetch(), because EventSource
// cannot send an Authorization header. One function, so that the stream's
// details (URL, headers, event names) can change in one place.

/** Thrown when the service has no event stream (an older service: poll instead). */
export class StreamUnavailable extends Error {}

/** Thrown when the stream refuses the key (401/403). */
export class StreamRefused extends Error {}

/**
 * Reads `url` as text/event-stream until it ends or `signal` aborts, calling
 * `onEvent({event, id, data})` for each event (`data` parsed as JSON when it is JSON).
 * Sends `headers` (the Bearer key) and `Last-Event-ID` when `lastEventId` is set.
 * Resolves when the server ends the stream; rejects with StreamUnavailable on
 * 404/405, StreamRefused on 401/403, any other Error on network failures.
 */
export async function readEventStream(url, { headers = {}, lastEventId = null, signal, onEvent }) {
  const sent = { Accept: "text/event-stream", ...headers };
  if (lastEventId !== null && lastEventId !== undefined) sent["Last-Event-ID"] = String(lastEventId);
  const response = await fetch(url, { headers: sent, signal, cache: "no-store" });
  if (response.status === 404 || response.status === 405) {
    throw new StreamUnavailable(`no event stream at ${url} (${response.status})`);
  }
  if (response.status === 401 || response.status === 403) {
    throw new StreamRefused(`event stream refused the key (${response.status})`);
  }
  if (!response.ok || !response.body) throw new Error(`event stream answered ${response.status}`);

  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let id = null;
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      let line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        // A blank line ends an event; one without data is nothing (keep-alives are comments).
        if (data.length) {
          const text = data.join("\n");
          let parsed = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON: hand over the text
          }
          onEvent({ event, id, data: parsed });
        }
        event = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let fieldValue = colon < 0 ? "" : line.slice(colon + 1);
      if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
      if (field === "data") data.push(fieldValue);
      else if (field === "event") event = fieldValue;
      else if (field === "id") id = fieldValue;
    }
  }
}

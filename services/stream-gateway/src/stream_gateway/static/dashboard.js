// The live dashboard: follows the gateway's streams with EventSource, which resumes with
// Last-Event-ID by itself after a dropped connection; a stream the gateway refused or ended for
// good is opened again from its last position.
//
// Signing in: EventSource cannot send an Authorization header, so the page trades a bearer token
// for the gateway's HttpOnly session cookie (POST /session). The token comes from the address's
// fragment (#token=..., which browsers never send to a server; make run prints such an address)
// or from the sign-in form, and is dropped from the address bar at once.
"use strict";

const params = new URLSearchParams(location.search);
let municipality = params.get("municipality") || "aalborg-kommune";
const year = Number(params.get("year") || new Date().getFullYear());
const RECENT_ENTRIES = 15;

// What the page has received: read by its browser test (no entry lost, none twice).
const state = { entryIds: new Set(), duplicates: 0, inventory: null, streams: {}, signedIn: false };
window.dashboardState = state;

const short = (name, prefix) => (name || "").replace(prefix, "").toLowerCase().replaceAll("_", " ");
const tonnes = (kg) => (Number(kg) / 1000).toLocaleString("en", { maximumFractionDigits: 3 });

async function signIn(token) {
  const response = await fetch("/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error((await response.json()).detail || response.statusText);
  return response.json();
}

// The session: its reader, "signed-out", or "unreachable" (the gateway is away: try again).
async function session() {
  try {
    const response = await fetch("/session");
    if (response.ok) return response.json();
    return response.status === 401 || response.status === 403 ? "signed-out" : "unreachable";
  } catch (error) {
    return "unreachable";
  }
}

function askToSignIn(reason) {
  for (const source of Object.values(sources)) source.close();
  state.signedIn = false;
  const form = document.getElementById("sign-in");
  document.getElementById("sign-in-reason").textContent = reason;
  form.hidden = false;
}

const sources = {};
function follow(name, query, handlers) {
  let lastId = null;
  let source = null;
  const open = () => {
    const search = new URLSearchParams(query);
    if (lastId) search.set("position", lastId);  // a new EventSource cannot send the header
    source = new EventSource(`/streams/${name}?${search}`);
    sources[name] = source;
    state.streams[name] = "connecting";
    source.onopen = () => { state.streams[name] = "live"; showStatus(); };
    source.onerror = () => {
      state.streams[name] = "reconnecting";
      showStatus();
      // Closed for good: refused (signed out, say) or the gateway answered an error.
      if (source.readyState === EventSource.CLOSED) {
        session().then((reader) => {
          if (reader === "signed-out") askToSignIn("The session has ended: sign in again.");
          else if (state.signedIn) setTimeout(open, 2000);
        });
      }
    };
    for (const [event, handle] of Object.entries(handlers)) {
      source.addEventListener(event, (message) => {
        lastId = message.lastEventId || lastId;
        handle(JSON.parse(message.data));
      });
    }
    source.addEventListener("heartbeat", (message) => { lastId = message.lastEventId || lastId; });
    source.addEventListener("stream-error", (message) => console.warn(name, message.data));
  };
  open();
}

function showStatus() {
  const states = Object.values(state.streams);
  const live = states.length > 0 && states.every((s) => s === "live");
  const status = document.getElementById("status");
  status.dataset.state = live ? "live" : "reconnecting";
  status.textContent = live ? "live" : "reconnecting";
}

Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;

const inventoryChart = new Chart(document.getElementById("inventory-chart"), {
  type: "bar",
  data: { labels: [], datasets: [] },
  options: { scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "kg CO2e" } } } },
});
const fleetChart = new Chart(document.getElementById("fleet-chart"), {
  type: "bar",
  data: { labels: [], datasets: [{ label: "km", data: [], backgroundColor: "#2e7d9e" }] },
  options: { plugins: { legend: { display: false } } },
});

const CARRIER_COLOURS = ["#1f5f3a", "#b36b00", "#2e7d9e", "#8e3b7a", "#6b8e23", "#a33", "#777"];

function showInventory(inventory) {
  state.inventory = inventory;
  const emissions = document.getElementById("total-emissions");
  emissions.dataset.exact = inventory.emissionsKgCo2e;
  emissions.textContent = tonnes(inventory.emissionsKgCo2e);
  const avoided = document.getElementById("total-avoided");
  avoided.dataset.exact = inventory.avoidedKgCo2e;
  avoided.textContent = tonnes(inventory.avoidedKgCo2e);
  document.getElementById("entry-count").textContent = inventory.entryCount;
  // Bars: sector (emissions) and sector (avoided); stacks: energy carriers.
  const bars = [];
  const carriers = [];
  for (const line of inventory.lines) {
    const bar = `${short(line.sector, "SECTOR_")} ${line.kind === "ENTRY_KIND_AVOIDED_EMISSION" ? "(avoided)" : ""}`.trim();
    const carrier = short(line.energyCarrier, "ENERGY_CARRIER_");
    if (!bars.includes(bar)) bars.push(bar);
    if (!carriers.includes(carrier)) carriers.push(carrier);
  }
  inventoryChart.data.labels = bars;
  inventoryChart.data.datasets = carriers.map((carrier, index) => ({
    label: carrier,
    backgroundColor: CARRIER_COLOURS[index % CARRIER_COLOURS.length],
    data: bars.map((bar) => inventory.lines
      .filter((l) => `${short(l.sector, "SECTOR_")} ${l.kind === "ENTRY_KIND_AVOIDED_EMISSION" ? "(avoided)" : ""}`.trim() === bar
        && short(l.energyCarrier, "ENERGY_CARRIER_") === carrier)
      .reduce((sum, l) => sum + Number(l.kgCo2e), 0)),
  }));
  inventoryChart.update();
}

function showFleet(fleet) {
  fleetChart.data.labels = fleet.fuels.map((f) => short(f.fuelType, "FUEL_TYPE_"));
  fleetChart.data.datasets[0].data = fleet.fuels.map((f) => f.distanceM / 1000);
  fleetChart.update();
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function showEntry(posted) {
  const entry = posted.entry;
  if (state.entryIds.has(entry.entryId)) {
    state.duplicates += 1;
    return;
  }
  state.entryIds.add(entry.entryId);
  const body = document.querySelector("#entries tbody");
  const row = body.insertRow(0);
  row.dataset.entryId = entry.entryId;
  cell(row, `${entry.municipalityId} ${entry.year}`);
  cell(row, short(entry.sector, "SECTOR_"));
  cell(row, short(entry.energyCarrier, "ENERGY_CARRIER_"));
  cell(row, short(entry.kind, "ENTRY_KIND_"));
  cell(row, `${entry.activityAmount} ${entry.activityUnit}`, "number");
  cell(row, entry.kgCo2e, "number");
  cell(row, `${entry.sourceTopic} ${entry.sourceEventId.slice(0, 8)}`, "id");
  const factor = entry.emissionFactor || {};
  cell(row, `${factor.factorId}: ${factor.value} ${factor.unit} (${factor.version})`).title = factor.source;
  while (body.rows.length > RECENT_ENTRIES) body.deleteRow(-1);
}

const hubs = new Map();
function showHub(hub) {
  hubs.set(hub.hubId, hub);
  const body = document.querySelector("#hubs tbody");
  body.replaceChildren();
  for (const h of [...hubs.values()].sort((a, b) => a.hubId.localeCompare(b.hubId))) {
    const row = body.insertRow();
    row.dataset.hubId = h.hubId;
    cell(row, h.hubId);
    cell(row, h.depositsHeld, "number");
    cell(row, (h.massGHeld / 1000).toFixed(1), "number");
    cell(row, h.hazardousHeld, "number");
    cell(row, h.collectionsTotal, "number");
    const last = h.recentCollections[0];
    cell(row, last ? `${last.carrierPartnerId}, ${(last.massG / 1000).toFixed(1)} kg, ${last.occurredAt}` : "none yet");
  }
}

function showPlace() {
  document.getElementById("place").textContent = `${municipality}, ${year}`;
  document.getElementById("municipality").value = municipality;
  document.getElementById("year").value = year;
}

function startStreams(reader) {
  state.signedIn = true;
  document.getElementById("sign-in").hidden = true;
  // A climate officer reads their own municipality, whatever the address says.
  if (reader.municipality) municipality = reader.municipality;
  document.getElementById("user").textContent = `${reader.subject} (${reader.roles.join(", ")})`;
  showPlace();
  follow("inventory", { municipality, year }, { inventory: showInventory });
  follow("fleet-distance", { municipality, year }, { "fleet-distance": showFleet });
  follow("ledger-entries", { municipality, year, last: 50 }, { "ledger-entry": showEntry });
  follow("hub-occupancy", { municipality }, { "hub-occupancy": showHub });
}

document.getElementById("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  try {
    const reader = await signIn(input.value.trim());
    input.value = "";
    startStreams(reader);
  } catch (error) {
    document.getElementById("sign-in-reason").textContent = `Not signed in: ${error.message}`;
  }
});

async function begin() {
  showPlace();
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      startStreams(await signIn(token));
      return;
    } catch (error) {
      askToSignIn(`The token in the address was refused: ${error.message}`);
      return;
    }
  }
  const reader = await session();
  if (reader === "signed-out" || reader === "unreachable") askToSignIn("Sign in to see the live streams.");
  else startStreams(reader);
}

begin();

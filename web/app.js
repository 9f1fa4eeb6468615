// tether demo: chat (messages, typing indicator, presence) and a live leaderboard,
// in plain JavaScript over the browser's WebSocket and tether's JSON protocol
// (docs/PROTOCOL.md). Reconnects with backoff and jitter, and recovers missed
// publications from the last offset it saw.
'use strict';

const CHAT = 'chat:lobby';
const BOARD = 'scores:leaderboard';
const PLAYERS = ['Ada', 'Grace', 'Linus', 'Margaret', 'Ken', 'Barbara'];

const $ = (id) => document.getElementById(id);
const nameInput = $('name');
nameInput.value = localStorage.getItem('tether-name') || `guest-${Math.floor(Math.random() * 1000)}`;
nameInput.addEventListener('change', () => {
  localStorage.setItem('tether-name', nameInput.value);
  renderPresence();
});

let ws = null;
let nextId = 1;
const pending = new Map(); // request id -> resolve
const positions = {}; // channel -> {offset, epoch}: where to recover from
let attempt = 0;
const names = new Map(); // client id -> display name, learned from publications
const typing = new Map(); // name -> timeout
const scores = Object.fromEntries(PLAYERS.map((p) => [p, 0]));
let myClient = null;

function request(op, fields = {}) {
  return new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, op, ...fields }));
  });
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${scheme}://${location.host}/connection/websocket`);
  ws.onopen = async () => {
    attempt = 0;
    $('status').textContent = 'live';
    $('status').className = 'status live';
    myClient = (await request('connect')).result.client;
    await subscribe(CHAT, applyChat);
    await subscribe(BOARD, applyScore);
    refreshPresence();
  };
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.id !== undefined && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    } else if (msg.push) {
      onPush(msg);
    }
  };
  ws.onclose = (event) => {
    $('status').textContent = `reconnecting (${event.code})…`;
    $('status').className = 'status';
    for (const resolve of pending.values()) resolve({ error: { code: -1, message: 'closed' } });
    pending.clear();
    // Exponential backoff with full jitter: a restart does not bring every client back at once.
    const delay = Math.random() * Math.min(10000, 250 * 2 ** attempt++);
    setTimeout(connect, delay);
  };
}

const handlers = {};
async function subscribe(channel, apply) {
  handlers[channel] = apply;
  const reply = await request('subscribe', { channel, recover: positions[channel] });
  if (reply.error) return;
  const result = reply.result;
  if (positions[channel] && result.recovered) {
    for (const p of result.publications || []) deliver(channel, p.offset, p.data);
  } else {
    // First visit, or the gap is too old: rebuild from history.
    if (channel === BOARD) for (const p of PLAYERS) scores[p] = 0;
    const history = await request('history', { channel });
    for (const p of (history.result && history.result.publications) || []) deliver(channel, p.offset, p.data, true);
    if (channel === CHAT && positions[channel]) system('some messages were missed while offline');
  }
  positions[channel] = { offset: Math.max(result.offset, positions[channel]?.offset || 0), epoch: result.epoch };
  render();
}

function deliver(channel, offset, data, replay = false) {
  const position = positions[channel];
  if (position && offset <= position.offset && !replay) return; // already applied
  if (position) position.offset = Math.max(position.offset, offset);
  handlers[channel](data, replay);
}

function onPush(msg) {
  if (msg.push === 'publication') {
    deliver(msg.channel, msg.offset, msg.data);
    render();
  } else if ((msg.push === 'join' || msg.push === 'leave') && msg.channel === CHAT) {
    refreshPresence();
  }
}

function system(text) {
  const li = document.createElement('li');
  li.className = 'system';
  li.textContent = text;
  $('messages').append(li);
}

function applyChat(data) {
  if (!data || typeof data !== 'object') return;
  if (data.client && names.get(data.client) !== data.user) {
    names.set(data.client, data.user);
    renderPresence();
  }
  if (data.type === 'message') {
    const li = document.createElement('li');
    const who = document.createElement('b');
    who.textContent = data.user;
    li.append(who, document.createTextNode(data.text));
    $('messages').append(li);
    $('messages').scrollTop = $('messages').scrollHeight;
    clearTimeout(typing.get(data.user));
    typing.delete(data.user);
  } else if (data.type === 'typing' && data.user !== nameInput.value) {
    clearTimeout(typing.get(data.user));
    typing.set(data.user, setTimeout(() => { typing.delete(data.user); render(); }, 3000));
  }
}

function applyScore(data, replay) {
  if (!data || !PLAYERS.includes(data.player)) return;
  scores[data.player] += Number(data.delta) || 0;
  if (!replay) bumped = data.player;
}

let bumped = null;
function render() {
  const who = [...typing.keys()];
  $('typing').textContent = who.length ? `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…` : '';
  const rows = PLAYERS.map((p) => [p, scores[p]]).sort((a, b) => b[1] - a[1]);
  $('scores').replaceChildren(...rows.map(([player, score], i) => {
    const tr = document.createElement('tr');
    if (player === bumped) tr.className = 'bump';
    const button = document.createElement('button');
    button.textContent = '+1';
    button.onclick = () => request('publish', { channel: BOARD, data: { player, delta: 1 } });
    for (const text of [i + 1, player, score]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement('td');
    td.append(button);
    tr.append(td);
    return tr;
  }));
  bumped = null;
}

let present = [];
async function refreshPresence() {
  const reply = await request('presence', { channel: CHAT });
  present = (reply.result && reply.result.clients) || [];
  renderPresence();
}

function renderPresence() {
  $('presence').replaceChildren(...present.map(({ client, user }) => {
    const li = document.createElement('li');
    li.textContent = client === myClient ? `${nameInput.value} (you)` : (user || names.get(client) || client);
    return li;
  }));
}

$('send').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('text').value.trim();
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  request('publish', { channel: CHAT, data: { type: 'message', user: nameInput.value, client: myClient, text } });
  $('text').value = '';
});

let lastTyping = 0;
$('text').addEventListener('input', () => {
  if (Date.now() - lastTyping < 1500 || !ws || ws.readyState !== WebSocket.OPEN) return;
  lastTyping = Date.now();
  request('publish', { channel: CHAT, data: { type: 'typing', user: nameInput.value, client: myClient } });
});

render();
connect();

// tether demo: a chat room (messages, typing indicator, presence) and a live
// leaderboard, on the tether JavaScript client served at /tether.js. The
// client picks the transport, reconnects, resumes both channels from their
// last offsets and delivers each publication once; this page only renders.
// `?transports=sse,longpoll` picks the transports (to try the fallbacks).

import { Client } from '/tether.js';

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

const wanted = new URLSearchParams(location.search).get('transports');
const client = new Client(location.origin, wanted ? { transports: wanted.split(',') } : {});
const names = new Map(); // client id -> display name, learned from publications
const typing = new Map(); // name -> timeout
const scores = Object.fromEntries(PLAYERS.map((p) => [p, 0]));
let present = [];
let bumped = null;

function status(text, live) {
  $('status').textContent = text;
  $('status').className = live ? 'status live' : 'status';
  $('status').dataset.transport = live ? client.transport : '';
}

client.on('connecting', () => status('connecting…', false));
client.on('connected', ({ transport }) => status(`live · ${transport}`, true));
client.on('reconnecting', ({ delay, code }) => status(`reconnecting in ${(delay / 1000).toFixed(1)} s (${code})…`, false));
client.on('disconnected', ({ reconnect, reason }) => {
  if (!reconnect) status(`disconnected: ${reason}`, false);
});

/** Rebuilds a channel from its history, up to the offset its subscription starts after. */
async function reload(subscription, upTo, apply) {
  const page = await subscription.history();
  for (const p of page.publications) if (p.offset <= upTo) apply(p.data, true);
}

const chat = client.subscribe(CHAT, {
  publication: ({ data }) => {
    applyChat(data);
    render();
  },
  subscribed: ({ offset, recovering }) => {
    if (!recovering) reload(chat, offset, applyChat).then(render);
    refreshPresence();
  },
  unrecovered: ({ offset }) => {
    // History no longer reaches back to what this page showed: start over.
    $('messages').replaceChildren();
    system('some messages were missed while offline');
    reload(chat, offset, applyChat).then(render);
  },
  join: refreshPresence,
  leave: refreshPresence,
});

const board = client.subscribe(BOARD, {
  publication: ({ data }) => {
    applyScore(data, false);
    render();
  },
  subscribed: ({ offset, recovering }) => {
    if (!recovering) rebuildScores(offset);
  },
  unrecovered: ({ offset }) => rebuildScores(offset),
});

function rebuildScores(upTo) {
  for (const p of PLAYERS) scores[p] = 0;
  reload(board, upTo, applyScore).then(render);
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
    typing.set(data.user, setTimeout(() => {
      typing.delete(data.user);
      render();
    }, 3000));
  }
}

function applyScore(data, replay) {
  if (!data || !PLAYERS.includes(data.player)) return;
  scores[data.player] += Number(data.delta) || 0;
  if (!replay) bumped = data.player;
}

function render() {
  const who = [...typing.keys()];
  $('typing').textContent = who.length ? `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…` : '';
  const rows = PLAYERS.map((p) => [p, scores[p]]).sort((a, b) => b[1] - a[1]);
  $('scores').replaceChildren(...rows.map(([player, score], i) => {
    const tr = document.createElement('tr');
    if (player === bumped) tr.className = 'bump';
    const button = document.createElement('button');
    button.textContent = '+1';
    button.onclick = () => board.publish({ player, delta: 1 }).catch(() => {});
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

async function refreshPresence() {
  try {
    present = (await chat.presence()).clients;
  } catch {
    return; // reconnecting: the next subscribe refreshes it
  }
  renderPresence();
}

function renderPresence() {
  $('presence').replaceChildren(...present.map(({ client: id, user }) => {
    const li = document.createElement('li');
    li.textContent = id === client.clientId ? `${nameInput.value} (you)` : (user || names.get(id) || id);
    return li;
  }));
}

$('send').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('text').value.trim();
  if (!text || client.state !== 'connected') return;
  chat.publish({ type: 'message', user: nameInput.value, client: client.clientId, text }).catch(() => {});
  $('text').value = '';
});

let lastTyping = 0;
$('text').addEventListener('input', () => {
  if (Date.now() - lastTyping < 1500 || client.state !== 'connected') return;
  lastTyping = Date.now();
  chat.publish({ type: 'typing', user: nameInput.value, client: client.clientId }).catch(() => {});
});

render();
client.connect();

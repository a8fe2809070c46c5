// A real OpenID provider for Sallyport's tests: `oidc-provider` with a
// password + TOTP login, the device authorization grant, refresh-token
// rotation, RP-initiated logout and JWT access tokens for the broker.
//
// Usage (all flags optional; each also reads an IDP_* environment variable):
//   node server.js [--port 0] [--mfa on|off|optional] [--client-id sallyport-desktop]
//                  [--access-ttl 300] [--id-ttl 300] [--refresh-ttl 86400]
//                  [--device-ttl 600] [--session-ttl 86400]
//                  [--user alice:password:TOTPBASE32] [--amr-mfa otp]
//                  [--groups engineering,finance]
//
// When it listens it prints one JSON line on stdout, e.g.
//   {"event":"listening","issuer":"http://127.0.0.1:41234","port":41234}
// then one JSON line per finished interaction ({"event":"login",...}).
// It exits when stdin closes, so a test harness that dies takes it along.
// A line `rotate` on stdin rotates the signing key ({"event":"rotated",...}).
// Never use it outside tests: keys are committed, users are fixed.

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import querystring from 'node:querystring';

import Provider from 'oidc-provider';
import * as OTPAuth from 'otpauth';

const here = path.dirname(fileURLToPath(import.meta.url));

function arg(name, fallback) {
  const flag = `--${name}`;
  const idx = process.argv.indexOf(flag);
  if (idx !== -1 && idx + 1 < process.argv.length) return process.argv[idx + 1];
  const env = process.env[`IDP_${name.toUpperCase().replaceAll('-', '_')}`];
  return env ?? fallback;
}

const config = {
  port: Number(arg('port', '0')),
  // on: password + one-time code; off: password only; optional: password
  // only unless the client asks for the MFA acr (acr_values, as an RFC 9470
  // step-up does), as at IdPs where MFA is per application.
  mfa: arg('mfa', 'on'),
  clientId: arg('client-id', 'sallyport-desktop'),
  accessTtl: Number(arg('access-ttl', '300')),
  idTtl: Number(arg('id-ttl', '300')),
  refreshTtl: Number(arg('refresh-ttl', '86400')),
  deviceTtl: Number(arg('device-ttl', '600')),
  sessionTtl: Number(arg('session-ttl', '86400')),
  // user:password:totp-secret (base32)
  user: arg('user', 'alice:correct horse battery staple:JBSWY3DPEHPK3PXP'),
  // The amr value the second factor adds (RFC 8176).
  amrMfa: arg('amr-mfa', 'otp'),
  // The user's groups, put into access tokens as `groups` (the broker's
  // access policy reads them); comma-separated, empty for none.
  groups: arg('groups', '').split(',').map((g) => g.trim()).filter(Boolean),
};
if (!['on', 'off', 'optional'].includes(config.mfa)) {
  throw new Error(`--mfa must be on, off or optional, not ${config.mfa}`);
}

const [userName, userPassword, totpSecret] = config.user.split(':');
const ACR_MFA = 'urn:sallyport:acr:mfa';
const ACR_PWD = 'urn:sallyport:acr:pwd';
// The broker's resource indicator (RFC 8707) and the `aud` of its JWT access tokens.
const BROKER_RESOURCE = 'urn:sallyport:broker';
const BROKER_AUDIENCE = 'sallyport-broker';

function log(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function loadJwk(file, kid, alg) {
  const pem = fs.readFileSync(path.join(here, 'keys', file), 'utf8');
  const jwk = crypto.createPrivateKey(pem).export({ format: 'jwk' });
  return { ...jwk, kid, alg, use: 'sig' };
}

const jwks = {
  keys: [
    loadJwk('idp-rs256.pem', 'idp-rs256', 'RS256'),
    loadJwk('idp-es256.pem', 'idp-es256', 'ES256'),
  ],
};

const totp = new OTPAuth.TOTP({
  secret: OTPAuth.Secret.fromBase32(totpSecret),
  digits: 6,
  period: 30,
  algorithm: 'SHA1',
});

const server = http.createServer();
await new Promise((resolve) => { server.listen(config.port, '127.0.0.1', resolve); });
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const providerConfig = {
  clients: [{
    client_id: config.clientId,
    client_name: 'Sallyport',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    // RFC 8252 §7.3: any port is accepted for loopback redirects of native clients.
    redirect_uris: ['http://127.0.0.1/callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/logged-out'],
    id_token_signed_response_alg: 'RS256',
    require_auth_time: true,
  }],
  jwks,
  cookies: { keys: ['sallyport-test-idp-cookie-key'] },
  pkce: { required: () => true },
  acrValues: [ACR_MFA, ACR_PWD],
  claims: {
    // amr (RFC 8176) rides on the openid scope so every ID token shows how
    // the user authenticated; acr/auth_time are added by the provider.
    openid: ['sub', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // Put the scope claims (name, email) into the ID token, so `whoami` can show them.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => BROKER_RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== BROKER_RESOURCE) throw new Provider.errors.InvalidTarget();
        return {
          scope: 'broker',
          audience: BROKER_AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: config.accessTtl,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // RFC 9068 §2.2.1: access tokens say when and how the user signed in
  // (auth_time, acr, amr), so the broker can enforce MFA and session
  // revocation itself. Taken from what the token is minted from (the code,
  // device code or refresh token), so a refresh keeps the sign-in's values.
  extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken') return undefined;
    const { entities = {} } = ctx?.oidc ?? {};
    const source = entities.RefreshToken ?? entities.AuthorizationCode ?? entities.DeviceCode;
    if (!source) return undefined;
    // The user's email and groups too, as IdPs put them into access tokens
    // for resource servers (the broker's `sallyport.access` reads them).
    return {
      auth_time: source.authTime,
      acr: source.acr,
      amr: source.amr,
      email: `${source.accountId}@example.com`,
      groups: config.groups,
    };
  },
  // Public clients get a refresh token without `prompt=consent` (first-party app).
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: config.accessTtl,
    IdToken: config.idTtl,
    RefreshToken: config.refreshTtl,
    DeviceCode: config.deviceTtl,
    Session: config.sessionTtl,
    Grant: config.sessionTtl,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  async findAccount(ctx, id) {
    if (id !== userName) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.com`,
          email_verified: true,
          name: id.charAt(0).toUpperCase() + id.slice(1),
          preferred_username: id,
        };
      },
    };
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>Error</title><h1>${out.error}</h1><p>${out.error_description ?? ''}</p>`;
  },
};

function logServerError(ctx, err) {
  process.stderr.write(`idp server_error: ${err.stack}\n`);
}

// Reassigned by rotateSigningKey (oidc-provider cannot change keys in place).
let provider = new Provider(issuer, providerConfig);
provider.on('server_error', logServerError);
let oidc = provider.callback();

// Key rotation, for tests of the client's JWKS refetch: a line `rotate` on
// stdin generates a new RS256 key, publishes it in front of the old keys
// (which stay published) and signs every later token with it (oidc-provider
// signs with the first key that fits the algorithm). The provider object is
// replaced, so sessions and grants made before are forgotten.
function rotateSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `idp-rs256-rotated-${crypto.randomUUID()}`;
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  jwks.keys.unshift(jwk);
  provider = new Provider(issuer, { ...providerConfig, jwks: { keys: [...jwks.keys] } });
  provider.on('server_error', logServerError);
  oidc = provider.callback();
  log({ event: 'rotated', kid, published: jwks.keys.map((k) => k.kid) });
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function page(res, title, body, status = 200) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`
    + `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 64 * 1024) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(querystring.parse(data)));
    req.on('error', reject);
  });
}

// uid -> accountId that passed the password step and still owes a TOTP code.
const passwordPassed = new Map();

function loginForm(uid, error) {
  return `${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<input type="text" name="username" autocomplete="username"/>
<input type="password" name="password" autocomplete="current-password"/>
<button type="submit">Sign in</button>
</form>`;
}

function otpForm(uid, error) {
  return `${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/otp">
<input type="text" name="otp" inputmode="numeric" autocomplete="one-time-code"/>
<button type="submit">Verify</button>
</form>`;
}

function passwordOk(username, password) {
  const a = Buffer.from(`${username}\0${password}`);
  const b = Buffer.from(`${userName}\0${userPassword}`);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

// Sallyport is a first-party app: consent is granted without a screen. A
// native client needs an explicit consent result on every authorization
// (oidc-provider's native_client_prompt check), so every login carries one.
async function grantFor(details, accountId) {
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope('openid email profile offline_access');
  grant.addResourceScope(BROKER_RESOURCE, 'broker');
  return grant.save();
}

async function finishLogin(req, res, details, accountId, amr) {
  const acr = amr.length > 1 ? ACR_MFA : ACR_PWD;
  passwordPassed.delete(details.uid);
  log({ event: 'login', account: accountId, amr, acr });
  const grantId = await grantFor(details, accountId);
  await provider.interactionFinished(req, res, {
    login: { accountId, amr, acr, remember: true },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

async function interactions(req, res, url) {
  const parts = url.pathname.split('/').filter(Boolean); // ['interaction', uid, step?]
  const uid = parts[1];
  const step = parts[2];
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 'Interaction mismatch', '', 400);
    return;
  }
  if (req.method === 'GET' && !step) {
    if (details.prompt.name === 'login') {
      page(res, 'Sign in', loginForm(uid));
    } else {
      // consent (an existing session): grant without a screen, see grantFor.
      const grantId = await grantFor(details, details.session.accountId);
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    return;
  }
  if (req.method === 'POST' && step === 'login') {
    const form = await readForm(req);
    if (!passwordOk(String(form.username ?? ''), String(form.password ?? ''))) {
      page(res, 'Sign in', loginForm(uid, 'Wrong user name or password.'), 401);
      return;
    }
    const asked = String(details.params.acr_values ?? '').split(' ');
    if (config.mfa === 'off' || (config.mfa === 'optional' && !asked.includes(ACR_MFA))) {
      await finishLogin(req, res, details, userName, ['pwd']);
      return;
    }
    passwordPassed.set(uid, userName);
    page(res, 'Enter your one-time code', otpForm(uid));
    return;
  }
  if (req.method === 'POST' && step === 'otp') {
    const accountId = passwordPassed.get(uid);
    if (!accountId) {
      page(res, 'Sign in', loginForm(uid, 'Enter your password first.'), 400);
      return;
    }
    const form = await readForm(req);
    const delta = totp.validate({ token: String(form.otp ?? ''), window: 1 });
    if (delta === null) {
      page(res, 'Enter your one-time code', otpForm(uid, 'Wrong code.'), 401);
      return;
    }
    await finishLogin(req, res, details, accountId, ['pwd', config.amrMfa]);
    return;
  }
  page(res, 'Not found', '', 404);
}

server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/interaction/')) {
    interactions(req, res, url).catch((err) => {
      if (!res.headersSent) page(res, 'Error', escapeHtml(err.message), 500);
      else res.end();
    });
    return;
  }
  oidc(req, res);
});

log({ event: 'listening', issuer, port, mfa: config.mfa, client_id: config.clientId });

// Exit with the parent: tests hold our stdin open and close it when done.
process.stdin.on('end', () => process.exit(0));
// Commands, one per line (see rotateSigningKey).
let commands = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  commands += chunk;
  let newline = commands.indexOf('\n');
  while (newline !== -1) {
    const command = commands.slice(0, newline).trim();
    commands = commands.slice(newline + 1);
    if (command === 'rotate') rotateSigningKey();
    newline = commands.indexOf('\n');
  }
});
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));

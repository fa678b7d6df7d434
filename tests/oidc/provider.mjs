// A real OpenID Provider for the tests: oidc-provider 9 (OpenID Certified),
// on loopback, with one confidential client and its development login
// pages (any login name is an account; its claims follow from the name).
//
// usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
//                          [BACKCHANNEL_LOGOUT_URI [POST_LOGOUT_REDIRECT_URI]]
// Prints "ready ISSUER" on stdout once it listens, then "backchannel BODY"
// for each back-channel logout request it sends (the tests replay them)
// and "signed KID" for each ID token it hands out.
//
// Its signing keys live in the file $OIDC_KEYS (made with one RSA key if
// missing); with OIDC_ROTATE=1 a new key is made and published first, beside
// the old ones: key rotation, as a provider restarted with a new key does.
// GET /_test/tamper?mode=M makes the token endpoint hand out forged ID
// tokens (none, hs256-public, other-key, aud, iss, nonce, expired) until
// mode=off: the attacks a relying party must refuse. GET /_test/slow?ms=N
// delays its token endpoint's answers by N ms (0: not at all).
//
// Every login gets a refresh token (not only offline_access ones), rotated
// at each refresh: a refresh token used twice is refused, and its grant
// revoked, as strict providers do. GET /_test/access_ttl?s=N makes access
// tokens issued from then on live N seconds (3600 at start). It prints
// "grant TYPE STATUS ACCESS_TOKEN" for each answer of its token endpoint,
// and "sid SID" for each ID token naming the provider's session. GET
// /_test/logout_token?sid=S hands out a signed logout token naming only S.
import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri, backchannelUri, postLogoutUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const client = {
  client_id: clientId,
  client_secret: clientSecret,
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
};
if (backchannelUri) {
  client.backchannel_logout_uri = backchannelUri;
  // ID tokens and logout tokens carry the provider's session (sid).
  client.backchannel_logout_session_required = true;
}
if (postLogoutUri) {
  client.post_logout_redirect_uris = [postLogoutUri];
}

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}
const keysFile = process.env.OIDC_KEYS;
let keys = keysFile && fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')) : [newKey()];
if (process.env.OIDC_ROTATE === '1') {
  keys = [newKey(), ...keys];
}
if (keysFile) {
  fs.writeFileSync(keysFile, JSON.stringify(keys));
}

// The key 'other-key' forges with, made once here: making a 2048-bit key
// inside the token request took over the test's 1 s timeout on a busy machine.
const strangerKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const unb64 = (s) => JSON.parse(Buffer.from(s, 'base64url').toString());

// Re-signs or breaks an ID token the provider made, by `mode`.
function tamper(token, mode) {
  const [h, p] = token.split('.');
  const header = unb64(h);
  const payload = unb64(p);
  const signer = crypto.createPrivateKey({ key: keys[0], format: 'jwk' });
  const rs256 = (hdr, body, key) => {
    const input = `${b64(hdr)}.${b64(body)}`;
    return `${input}.${crypto.sign('sha256', Buffer.from(input), key).toString('base64url')}`;
  };
  switch (mode) {
    case 'none':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
    case 'hs256-public': {
      const pem = crypto.createPublicKey(signer).export({ type: 'spki', format: 'pem' });
      const hdr = { alg: 'HS256', typ: 'JWT', kid: header.kid };
      const input = `${b64(hdr)}.${b64(payload)}`;
      return `${input}.${crypto.createHmac('sha256', pem).update(input).digest('base64url')}`;
    }
    case 'other-key':
      return rs256(header, payload, strangerKey);
    case 'aud':
      return rs256(header, { ...payload, aud: 'another-client' }, signer);
    case 'iss':
      return rs256(header, { ...payload, iss: 'http://127.0.0.1:1' }, signer);
    case 'nonce':
      return rs256(header, { ...payload, nonce: 'not-the-login-nonce' }, signer);
    case 'expired': {
      const now = Math.floor(Date.now() / 1000);
      return rs256(header, { ...payload, iat: now - 7200, exp: now - 3600 }, signer);
    }
    default:
      return token;
  }
}
let tamperMode = 'off';
let slowMs = 0;
let accessTtl = 3600;

const provider = new Provider(issuer, {
  clients: [client],
  jwks: { keys },
  pkce: { required: () => true },
  issueRefreshToken: async (ctx, c) => c.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: { AccessToken: () => accessTtl },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: `${id}@example.org`, email_verified: true, name: `User ${id}` }),
  }),
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  // Since 9.7 outgoing requests to special-use addresses are refused; the
  // tests' nginx is on loopback. Loopback only, and each back-channel
  // logout request is shown so that a test can replay it.
  fetch: (url, options) => {
    if (new URL(url).hostname !== '127.0.0.1') {
      throw new Error(`tests only: no request to ${url}`);
    }
    delete options.dispatcher;
    if (options.body instanceof URLSearchParams) {
      process.stdout.write(`backchannel ${options.body.toString()}\n`);
    }
    return globalThis.fetch(url, options);
  },
  cookies: { keys: ['ngx-sessions-tests-only'] },
});
// Loopback only, plain HTTP: tests only.
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/tamper') {
    tamperMode = String(ctx.query.mode || 'off');
    ctx.body = `tamper ${tamperMode}\n`;
    return;
  }
  if (ctx.path === '/_test/mark') {
    // Everything printed before this line has been printed: the tests
    // wait for it before they read what it printed.
    process.stdout.write(`mark ${ctx.query.id}\n`);
    ctx.body = 'ok';
    return;
  }
  if (ctx.path === '/_test/logout_token') {
    // A back-channel logout token naming only the provider session `sid`,
    // signed with the provider's key, as a provider that sends no sub does.
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      iss: issuer, aud: clientId, iat: now, exp: now + 120, jti: crypto.randomUUID(),
      sid: String(ctx.query.sid || ''),
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
    };
    const header = { alg: 'RS256', typ: 'logout+jwt', kid: keys[0].kid };
    const input = `${b64(header)}.${b64(payload)}`;
    const key = crypto.createPrivateKey({ key: keys[0], format: 'jwk' });
    ctx.body = `${input}.${crypto.sign('sha256', Buffer.from(input), key).toString('base64url')}`;
    return;
  }
  if (ctx.path === '/_test/access_ttl') {
    accessTtl = Number(ctx.query.s || 3600);
    ctx.body = `access_ttl ${accessTtl}\n`;
    return;
  }
  if (ctx.path === '/_test/slow') {
    slowMs = Number(ctx.query.ms || 0);
    ctx.body = `slow ${slowMs}\n`;
    return;
  }
  if (ctx.path === '/token' && slowMs > 0) {
    await new Promise((resolve) => { setTimeout(resolve, slowMs); });
  }
  await next();
  if (ctx.path === '/token') {
    const grant = ctx.oidc && ctx.oidc.params ? ctx.oidc.params.grant_type : '?';
    const access = ctx.body && ctx.body.access_token ? ctx.body.access_token : '-';
    process.stdout.write(`grant ${grant} ${ctx.status} ${access}\n`);
  }
  if (ctx.path === '/token' && ctx.body && ctx.body.id_token) {
    process.stdout.write(`signed ${unb64(ctx.body.id_token.split('.')[0]).kid}\n`);
    const { sid } = unb64(ctx.body.id_token.split('.')[1]);
    if (sid) {
      process.stdout.write(`sid ${sid}\n`);
    }
  }
  if (ctx.path === '/token' && tamperMode !== 'off' && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: tamper(ctx.body.id_token, tamperMode) };
  }
});

provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

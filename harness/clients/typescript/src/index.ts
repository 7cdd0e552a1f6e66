// airlock as a sandbox provider for the OpenAI Agents SDK for TypeScript.
export { AirlockSandboxClient, type AirlockSandboxClientOptions } from './client.js';
export { AirlockSandboxSession, AirlockEditor, type AirlockSandboxSessionState, type AirlockCreateOptions } from './session.js';
export { AirlockConnection, AirlockError, DEFAULT_SOCKET, resolveProtoPath } from './rpc.js';
export { assertEntrySupported, assertManifestSupported } from './manifest.js';

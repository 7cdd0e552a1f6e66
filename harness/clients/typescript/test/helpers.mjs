// Shared by the tests: the daemon under test, a scripted Model, and reading
// files back through the API.
import { Usage } from '@openai/agents';

/** airlockd's socket ($AIRLOCK_SOCKET); the tests skip without one. */
export const SOCKET = process.env.AIRLOCK_SOCKET || '';
/** A directory under the daemon's allowed roots ($AIRLOCK_ALLOWED_DIR), for host-path entries. */
export const ALLOWED = process.env.AIRLOCK_ALLOWED_DIR || '';
export const skip = SOCKET ? false : 'AIRLOCK_SOCKET is not set (tests/daemon/test_typescript_client.py runs these against a real airlockd)';

/** The SDK's Model interface answering from a script: each step sees the request and returns the output items. */
export class ScriptModel {
  constructor(steps) {
    this.steps = steps;
    this.requests = [];
  }

  async getResponse(request) {
    this.requests.push(request);
    const step = this.steps.shift();
    if (!step) throw new Error('ScriptModel: no more scripted steps');
    const output = await step(request, this);
    return { usage: new Usage(), output, responseId: `scripted-${this.requests.length}` };
  }

  // The runner only streams when asked to; these tests don't.
  async *getStreamedResponse() {
    throw new Error('ScriptModel: streaming is not scripted');
  }

  /** The output the last tool call returned, as the model received it. */
  static lastToolOutput(request) {
    const items = Array.isArray(request.input) ? request.input : [];
    for (let i = items.length - 1; i >= 0; i--) {
      const it = items[i];
      if (it.type === 'apply_patch_call_output') return it.output ?? '';
      if (it.type === 'function_call_result') {
        const o = it.output;
        if (typeof o === 'string') return o;
        if (o && typeof o.text === 'string') return o.text;
        return JSON.stringify(o);
      }
    }
    return '';
  }
}

let callCounter = 0;
export function call(name, args) {
  callCounter += 1;
  return { type: 'function_call', callId: `call_${callCounter}`, name, arguments: JSON.stringify(args), status: 'completed' };
}

/** A native apply_patch tool call with one structured operation. */
export function patchCall(operation) {
  callCounter += 1;
  return { type: 'apply_patch_call', callId: `call_${callCounter}`, status: 'completed', operation };
}

export function say(text) {
  return { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text }] };
}

export async function text(session, path) {
  return Buffer.from(await session.readFile({ path })).toString('utf8');
}

// serve.mjs - drives rwkv-chat --serve with the official openai package and
// prints TAP.  tests/test_serve_node.sh starts the server and passes
// SERVE_URL, SERVE_KEY and the greedy reply rwkv-chat --batch gives to
// QUESTION (WANT).
import OpenAI from "openai";

const url = process.env.SERVE_URL;
const key = process.env.SERVE_KEY;
const question = process.env.QUESTION;
const want = process.env.WANT;
const client = new OpenAI({ baseURL: url + "/v1", apiKey: key, maxRetries: 0 });
const greedy = { temperature: 0, presence_penalty: 0, frequency_penalty: 0 };
let n = 0, failed = 0;

function ok(cond, what, detail) {
    n++;
    console.log(`${cond ? "ok" : "not ok"} ${n} - ${what}`);
    if (!cond) {
        failed = 1;
        if (detail !== undefined) console.log(`# ${JSON.stringify(detail)}`);
    }
}

async function check(what, fn) {
    try {
        await fn();
    } catch (e) {
        ok(false, what, String(e));
    }
}

async function health() {
    return (await fetch(url + "/health")).json();
}

await check("models.list names the model", async () => {
    const list = await client.models.list();
    ok(list.data.length === 1 && list.data[0].id === "rwkv7-tiny-chat.pth",
       "models.list names the model", list.data);
});

await check("chat.completions.create", async () => {
    const r = await client.chat.completions.create({
        model: "rwkv7-tiny-chat.pth", messages: [{ role: "user", content: question }], ...greedy });
    ok(r.choices[0].message.content === want,
       "chat.completions.create: the greedy reply equals rwkv-chat --batch --greedy's",
       r.choices[0].message.content);
    ok(r.choices[0].finish_reason === "stop" && r.usage.completion_tokens > 0 &&
       r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens,
       "chat.completions.create: finish_reason and usage", r.usage);
});

await check("streaming chat", async () => {
    const stream = await client.chat.completions.create({
        model: "x", messages: [{ role: "user", content: question }], stream: true,
        stream_options: { include_usage: true }, ...greedy });
    let text = "", finish = null, usage = null;
    for await (const chunk of stream) {
        if (chunk.choices.length) {
            text += chunk.choices[0].delta.content ?? "";
            finish = chunk.choices[0].finish_reason ?? finish;
        }
        if (chunk.usage) usage = chunk.usage;
    }
    ok(text === want, "a streamed chat adds up to the same reply", text);
    ok(finish === "stop" && usage && usage.completion_tokens > 0,
       "the stream ends with finish_reason and usage", { finish, usage });
});

await check("completions", async () => {
    const r = await client.completions.create({
        model: "x", prompt: "The ls command", max_tokens: 5, temperature: 0 });
    ok(r.choices[0].finish_reason === "length" && r.usage.completion_tokens === 5 &&
       r.choices[0].text.length > 0, "completions.create: 5 tokens, finish_reason length", r);
});

await check("a bad field", async () => {
    try {
        await client.chat.completions.create({
            model: "x", messages: [{ role: "user", content: "hi" }], temperature: 1000 });
        ok(false, "temperature 1000 is refused");
    } catch (e) {
        ok(e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "temperature",
           "temperature 1000 is refused: BadRequestError, param temperature",
           { status: e.status, param: e.param });
    }
});

await check("a wrong key", async () => {
    const bad = new OpenAI({ baseURL: url + "/v1", apiKey: key + "x", maxRetries: 0 });
    try {
        await bad.models.list();
        ok(false, "a wrong API key is refused");
    } catch (e) {
        ok(e instanceof OpenAI.AuthenticationError && e.status === 401,
           "a wrong API key is refused: AuthenticationError (401)", e.status);
    }
});

await check("abort", async () => {
    const before = await health();
    const ac = new AbortController();
    const stream = await client.completions.create(
        { model: "x", prompt: "The ls command", max_tokens: 1000000, stream: true },
        { signal: ac.signal });
    let chunks = 0;
    try {
        for await (const chunk of stream) {
            if (++chunks === 3) ac.abort();
        }
    } catch (e) {
        // the abort ends the iteration with an error
    }
    let h = await health();
    for (let i = 0; i < 600 && h.active + h.queued > 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        h = await health();
    }
    ok(h.active === 0 && h.cancelled === before.cancelled + 1 &&
       h.tokens_generated - before.tokens_generated < 1000000,
       "an aborted stream stops its generation on the server",
       { cancelled: h.cancelled, generated: h.tokens_generated - before.tokens_generated });
});

await check("named states", async () => {
    const a = await client.chat.completions.create({
        model: "x", messages: [{ role: "user", content: question }], ...greedy,
        state_save: "node-1" });
    const b = await client.chat.completions.create({
        model: "x", messages: [{ role: "user", content: "Who are you?" }], ...greedy,
        state_from: "node-1" });
    const c = await client.chat.completions.create({
        model: "x", ...greedy, messages: [
            { role: "user", content: question },
            { role: "assistant", content: a.choices[0].message.content },
            { role: "user", content: "Who are you?" }] });
    ok(b.choices[0].message.content === c.choices[0].message.content &&
       b.usage.prompt_tokens < c.usage.prompt_tokens,
       "state_save / state_from (extra fields) continue a conversation",
       [b.choices[0].message.content, c.choices[0].message.content]);
});

console.log(`1..${n}`);
process.exit(failed);

// Load GGUF files in llama.cpp (node-llama-cpp's prebuilt CPU build), tokenize each reference
// prompt and decode greedily; print one JSON line per file and prompt. References: argv[2] (a JSON
// list written by bench/gguf_llama_cpp.py), GGUF files: argv[3...].
import {getLlama} from "node-llama-cpp";
import fs from "fs";
const refs = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never"});
for (const f of process.argv.slice(3)) {
  const model = await llama.loadModel({modelPath: f});
  for (const [i, ref] of refs.entries()) {
  const ids = Array.from(model.tokenize(ref.prompt, true));
  const same = JSON.stringify(ids) === JSON.stringify(ref.prompt_ids);
  const context = await model.createContext({contextSize: 512});
  const seq = context.getSequence();
  const out = [];
  for await (const t of seq.evaluate(ids, {temperature: 0})) {
    out.push(t);
    if (out.length >= ref.hf_new_ids.length || model.isEogToken?.(t)) break;
  }
  const text = model.detokenize(out, true);
  console.log(JSON.stringify({file: f, prompt: i, prompt_tokens_equal: same, n_prompt: ids.length, llama_ids: out, hf_ids: ref.hf_new_ids, llama_text: text, hf_text: ref.hf_text,
    eos: model.tokens.eos, arch: model.fileInfo.metadata.general.architecture}));
  await context.dispose();
  }
  await model.dispose();
}

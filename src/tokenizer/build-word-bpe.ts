// A LLaMA-style tokenizer.json for a small closed language (the synthetic world's): the same
// normalizer, decoder and special tokens as LLaMA's SentencePiece-BPE (`<unk>` 0, `<s>` 1,
// `</s>` 2, byte fallback), with a vocabulary made so that every word of the corpus is one token.
//
// Why by hand: no maintained JavaScript library trains a BPE tokenizer (@huggingface/tokenizers
// for JS only encodes). We do not need a trained one: the corpus is a few hundred words, so each
// word "▁word" gets a chain of merges (▁ + w, ▁w + o, ...), whose every step is in the vocabulary.
// Every merge's left side starts with ▁, so no merge can fire inside another word; any other
// text still encodes, through single characters and the byte fallback.
//
// Layout of the ids: the 3 specials, the 256 byte tokens <0x00>..<0xFF>, ▁ and the printable
// ASCII characters, then the merged pieces in the order their merges are ranked.

const SPACE = '\u2581';

export interface WordBpe {
  /** the tokenizer.json object */
  tokenizer: object;
  /** tokenizer_config.json */
  config: object;
  vocabSize: number;
}

/** The words of a corpus as the normalizer sees them: split on spaces, each with its ▁. */
export function corpusWords(texts: Iterable<string>): string[] {
  const seen = new Set<string>();
  for (const t of texts) {
    for (const w of t.split(' ')) if (w !== '') seen.add(SPACE + w);
  }
  return [...seen].sort();
}

export function buildWordBpe(texts: Iterable<string>): WordBpe {
  const vocab = new Map<string, number>();
  const add = (piece: string) => {
    if (!vocab.has(piece)) vocab.set(piece, vocab.size);
  };
  ['<unk>', '<s>', '</s>'].forEach(add);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  add(SPACE);
  for (let c = 0x21; c < 0x7f; c++) add(String.fromCharCode(c));
  const merges: string[] = [];
  const mergeSeen = new Set<string>();
  for (const word of corpusWords(texts)) {
    const chars = [...word];
    // Characters outside printable ASCII become vocabulary characters too (they appear in the corpus).
    chars.forEach(add);
    let left = chars[0]!;
    for (const c of chars.slice(1)) {
      const key = `${left} ${c}`;
      if (!mergeSeen.has(key)) {
        mergeSeen.add(key);
        merges.push(key);
      }
      left += c;
      add(left);
    }
  }
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'Prepend', prepend: SPACE }, { type: 'Replace', pattern: { String: ' ' }, content: SPACE }],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
  const decoderEntry = (content: string) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true });
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: { '0': decoderEntry('<unk>'), '1': decoderEntry('<s>'), '2': decoderEntry('</s>') },
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: 1024,
    spaces_between_special_tokens: false,
    tokenizer_class: 'LlamaTokenizer',
  };
  return { tokenizer, config, vocabSize: vocab.size };
}

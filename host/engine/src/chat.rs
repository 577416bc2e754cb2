//! Chat templates: the model's own Jinja template, rendered with minijinja.

use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// A compiled chat template and the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    pub source: String,
    bos: String,
    eos: String,
    path: PathBuf,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("path", &self.path).finish()
    }
}

impl ChatTemplate {
    /// Compile `source` (Hugging Face's Jinja dialect: `raise_exception`, Python string
    /// methods such as `.strip()`).
    pub fn new(source: &str, bos: &str, eos: &str, path: &Path) -> Result<Self> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| Error::ChatTemplate { path: path.to_owned(), reason: e.to_string() })?;
        Ok(Self { env, source: source.to_owned(), bos: bos.to_owned(), eos: eos.to_owned(), path: path.to_owned() })
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends where the
    /// assistant's answer begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template("chat").expect("added in new");
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos,
                eos_token => self.eos,
            })
            .map_err(|e| Error::ChatTemplate { path: self.path.clone(), reason: format!("{e:#}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_multi_turn_chatml() {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>", Path::new("test")).unwrap();
        let msgs = [Message::new("user", "Hi"), Message::new("assistant", "Hello!"), Message::new("user", "2+2?")];
        let text = t.render(&msgs, true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n\
             <|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let src = "{% if messages[0]['role'] == 'bad' %}{{ raise_exception('roles must alternate') }}{% endif %}{{ messages[0]['content'].strip() }}";
        let t = ChatTemplate::new(src, "", "", Path::new("t")).unwrap();
        assert_eq!(t.render(&[Message::new("user", "  x  ")], false).unwrap(), "x");
        let err = t.render(&[Message::new("bad", "x")], false).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }
}

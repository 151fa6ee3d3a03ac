#pragma once
/// \file RenameRule: how a checkpoint's keys are renamed before loading: strip or add a prefix (`module.` from
/// DataParallel, `_orig_mod.` from torch.compile) or a regex `pattern => replacement` (std::regex, ECMAScript,
/// `$1` for groups), applied in order to every key.
#include <regex>
#include <string>
#include <utility>

#include "torchlet/core/error.hpp"

namespace torchlet {

/// One key-renaming rule. Build it with strip_prefix / add_prefix / regex / parse.
class RenameRule {
 public:
  /// What the rule does.
  enum class Kind { StripPrefix, AddPrefix, Regex };

  /// Removes `prefix` from the keys that start with it ("module.conv1.weight" -> "conv1.weight"), like
  /// torch.nn.modules.utils.consume_prefix_in_state_dict_if_present; other keys are kept.
  static RenameRule strip_prefix(std::string prefix) {
    TORCHLET_CHECK(!prefix.empty(), ValueError, "[RenameRule] strip_prefix needs a non-empty prefix");
    return RenameRule(Kind::StripPrefix, std::move(prefix), {});
  }
  /// Puts `prefix` in front of every key ("conv1.weight" -> "backbone.conv1.weight").
  static RenameRule add_prefix(std::string prefix) {
    TORCHLET_CHECK(!prefix.empty(), ValueError, "[RenameRule] add_prefix needs a non-empty prefix");
    return RenameRule(Kind::AddPrefix, std::move(prefix), {});
  }
  /// Replaces the matches of ECMAScript regex `pattern` in each key by `replacement` ($1, $2 name groups), like
  /// Python's re.sub; raises ValueError for an invalid pattern.
  static RenameRule regex(std::string pattern, std::string replacement) {
    RenameRule r(Kind::Regex, std::move(pattern), std::move(replacement));
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
    try {
      r.re_ = std::regex(r.pattern_, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      TORCHLET_THROW(ValueError, "[RenameRule] invalid regex \"", r.pattern_, "\": ", e.what());
    }
#else
    r.re_ = std::regex(r.pattern_, std::regex::ECMAScript);  // without exceptions an invalid regex aborts
#endif
    return r;
  }
  /// A rule from text: "REGEX=>REPLACEMENT" (e.g. `^backbone\.(.*)=>$1`); raises ValueError without "=>".
  static RenameRule parse(const std::string& spec) {
    const size_t arrow = spec.find("=>");
    TORCHLET_CHECK(arrow != std::string::npos, ValueError, "[RenameRule] expected \"REGEX=>REPLACEMENT\", got \"", spec,
                   "\"");
    return regex(spec.substr(0, arrow), spec.substr(arrow + 2));
  }

  /// The key after this rule (unchanged when the rule does not apply).
  std::string apply(const std::string& key) const {
    switch (kind_) {
      case Kind::StripPrefix:
        return key.compare(0, pattern_.size(), pattern_) == 0 ? key.substr(pattern_.size()) : key;
      case Kind::AddPrefix: return pattern_ + key;
      case Kind::Regex: return std::regex_replace(key, re_, replacement_);
    }
    return key;
  }
  /// A module prefix ("module", "layer1.0", "" for the root) after this rule, for renaming `_metadata`: the rule is
  /// applied to `prefix + "."` and a trailing "." dropped ("module" -> "" for strip_prefix("module.")).
  std::string apply_to_prefix(const std::string& prefix) const {
    std::string p = apply(prefix.empty() ? prefix : prefix + ".");
    if (!p.empty() && p.back() == '.') p.pop_back();
    return p;
  }

  Kind kind() const { return kind_; }                              ///< What the rule does.
  const std::string& pattern() const { return pattern_; }          ///< The prefix, or the regex.
  const std::string& replacement() const { return replacement_; }  ///< The regex's replacement ("" otherwise).
  /// The rule as text: `strip "module."`, `add "backbone."`, `regex "^a\.(.*)" => "b.$1"`.
  std::string describe() const {
    switch (kind_) {
      case Kind::StripPrefix: return "strip \"" + pattern_ + "\"";
      case Kind::AddPrefix: return "add \"" + pattern_ + "\"";
      case Kind::Regex: return "regex \"" + pattern_ + "\" => \"" + replacement_ + "\"";
    }
    return {};
  }

 private:
  RenameRule(Kind kind, std::string pattern, std::string replacement)
      : kind_(kind), pattern_(std::move(pattern)), replacement_(std::move(replacement)) {}
  Kind kind_;
  std::string pattern_;
  std::string replacement_;
  std::regex re_;
};

}  // namespace torchlet

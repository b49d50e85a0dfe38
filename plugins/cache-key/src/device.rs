//! Device classes from the `User-Agent` header, by simple substring rules.

/// The request header the device class is sent upstream in (and keyed by).
pub const HEADER: &str = "x-device-class";

/// A client's device class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Phones.
    Mobile,
    /// Tablets.
    Tablet,
    /// Everything else, including a missing `User-Agent` and bots.
    Desktop,
}

/// `User-Agent` substrings (lowercase) of tablets. Checked first: iPads also say `Mobile`.
const TABLET: [&str; 5] = ["ipad", "tablet", "kindle", "silk/", "playbook"];

/// `User-Agent` substrings (lowercase) of phones. `mobi` covers `Mobile` and Opera's `Mobi`.
const MOBILE: [&str; 8] = [
    "mobi",
    "iphone",
    "ipod",
    "android",
    "windows phone",
    "blackberry",
    "bb10",
    "opera mini",
];

impl Device {
    /// Classifies a `User-Agent` value, case-insensitively:
    ///
    /// 1. **tablet** if it contains `iPad`, `Tablet`, `Kindle`, `Silk/` or `PlayBook`, or
    ///    contains `Android` but not `Mobi` (Android tablets leave `Mobile` out);
    /// 2. **mobile** if it contains `Mobi`, `iPhone`, `iPod`, `Android`, `Windows Phone`,
    ///    `BlackBerry`, `BB10` or `Opera Mini`;
    /// 3. **desktop** otherwise (also when there is no `User-Agent`).
    ///
    /// ```ignore
    /// assert_eq!(Device::classify(Some(b"Mozilla/5.0 (iPhone; ...) Mobile/15E148")), Device::Mobile);
    /// ```
    pub fn classify(user_agent: Option<&[u8]>) -> Device {
        let Some(ua) = user_agent else {
            return Device::Desktop;
        };
        let ua = ua.to_ascii_lowercase();
        let has = |needle: &str| ua.windows(needle.len()).any(|w| w == needle.as_bytes());
        if TABLET.iter().any(|n| has(n)) || (has("android") && !has("mobi")) {
            Device::Tablet
        } else if MOBILE.iter().any(|n| has(n)) {
            Device::Mobile
        } else {
            Device::Desktop
        }
    }

    /// The class's name: `mobile`, `tablet` or `desktop`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Desktop => "desktop",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ua: &str) -> &'static str {
        Device::classify(Some(ua.as_bytes())).as_str()
    }

    #[test]
    fn phones() {
        for ua in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
            "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
            "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) Mobile Safari/537.36 Edge/15.14977",
            "Mozilla/5.0 (BB10; Touch) AppleWebKit/537.10+ (KHTML, like Gecko) Version/10.0.9.2372 Mobile Safari/537.10+",
            "Mozilla/5.0 (iPod touch; CPU iPhone OS 12_5 like Mac OS X)",
        ] {
            assert_eq!(class(ua), "mobile", "{ua}");
        }
    }

    #[test]
    fn tablets() {
        for ua in [
            "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.1 like Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (Android 14; Tablet; rv:121.0) Gecko/121.0 Firefox/121.0",
            "Mozilla/5.0 (PlayBook; U; RIM Tablet OS 2.1.0; en-US) AppleWebKit/536.2+",
        ] {
            assert_eq!(class(ua), "tablet", "{ua}");
        }
    }

    #[test]
    fn desktops_and_the_rest() {
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "curl/8.5.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "",
        ] {
            assert_eq!(class(ua), "desktop", "{ua}");
        }
        assert_eq!(Device::classify(None), Device::Desktop);
        assert_eq!(class("MOZILLA/5.0 (IPHONE)"), "mobile");
    }
}

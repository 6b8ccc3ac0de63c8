//! The two pixel formats the fake offers, as V4L2 names and sizes them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

impl PixelFormat {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "MJPG" => Some(Self::Mjpeg),
            "YUYV" => Some(Self::Yuyv),
            _ => None,
        }
    }

    pub fn from_fourcc(code: u32) -> Option<Self> {
        [Self::Mjpeg, Self::Yuyv]
            .into_iter()
            .find(|f| f.fourcc() == code)
    }

    pub fn fourcc(self) -> u32 {
        match self {
            Self::Mjpeg => fourcc(b"MJPG"),
            Self::Yuyv => fourcc(b"YUYV"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mjpeg => "MJPG",
            Self::Yuyv => "YUYV",
        }
    }

    /// What `ENUM_FMT` describes it as (uvcvideo's wording).
    pub fn description(self) -> &'static str {
        match self {
            Self::Mjpeg => "Motion-JPEG",
            Self::Yuyv => "YUYV 4:2:2",
        }
    }

    pub fn compressed(self) -> bool {
        self == Self::Mjpeg
    }

    /// Bytes per line: none for a compressed format.
    pub fn bytes_per_line(self, width: u32) -> u32 {
        match self {
            Self::Mjpeg => 0,
            Self::Yuyv => width * 2,
        }
    }

    /// The most a frame can take, which is what a buffer holds: for MJPEG, as uvcvideo, what
    /// the uncompressed picture would take (JPEGs are much smaller, so `bytesused` is short).
    pub fn size_image(self, width: u32, height: u32) -> u32 {
        width * height * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourccs_are_the_little_endian_codes_v4l2_uses() {
        assert_eq!(PixelFormat::Mjpeg.fourcc(), 0x4750_4a4d);
        assert_eq!(PixelFormat::Yuyv.fourcc(), 0x5659_5559);
        assert_eq!(
            PixelFormat::from_fourcc(0x5659_5559),
            Some(PixelFormat::Yuyv)
        );
        assert_eq!(PixelFormat::from_fourcc(0), None);
    }
}

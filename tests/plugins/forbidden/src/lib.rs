//! Test plugin that imports an interface maitred does not offer (a stand-in for raw network
//! access). The host must refuse to load it, naming the problem, rather than link it.

wit_bindgen::generate!({
    inline: "
        package test:forbidden;

        interface raw-socket {
            connect: func(address: string) -> u32;
        }

        world forbidden {
            import raw-socket;
            export init: func(config: string) -> u32;
        }
    ",
});

struct Forbidden;

impl Guest for Forbidden {
    fn init(config: String) -> u32 {
        test::forbidden::raw_socket::connect(&config)
    }
}

export!(Forbidden);
